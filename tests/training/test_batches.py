"""BatchStream and TrainingConfig.prefetch: the same batches and weights, one step ahead."""

import pytest
import torch
from linear_gaussian import LinearGaussianProblem

from specutils_cinn.checkpoint import read_checkpoint
from specutils_cinn.training import BatchStream, TrainingConfig, train_model


def _draw(g):
    return torch.rand(3, generator=g)


def _stream(prefetch, steps=5, seed=7):
    g = torch.Generator().manual_seed(seed)
    return BatchStream(_draw, g, steps, prefetch), g


@pytest.mark.parametrize("prefetch", [False, True])
def test_batches_are_those_of_one_generator_in_order(prefetch):
    g = torch.Generator().manual_seed(7)
    expected = [_draw(g) for _ in range(5)]
    stream, _ = _stream(prefetch)
    with stream:
        got = list(stream)
    assert len(got) == 5
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(StopIteration):
        next(stream)


def test_generator_state_is_that_before_the_next_batch():
    serial, g_serial = _stream(False)
    ahead, _ = _stream(True)
    with ahead:
        for _ in range(2):
            next(serial), next(ahead)
        # the thread has drawn batch 3 already; the state kept is the one before it
        state = ahead.generator_state()
        assert torch.equal(state, g_serial.get_state())
        resumed = torch.Generator()
        resumed.set_state(state)
        torch.testing.assert_close(next(ahead), _draw(resumed), rtol=0, atol=0)


def test_the_thread_draws_no_batch_beyond_the_last_and_errors_surface():
    calls = []

    def draw(g):
        calls.append(1)
        return torch.rand(1, generator=g)

    with BatchStream(draw, torch.Generator().manual_seed(0), 3, prefetch=True) as s:
        list(s)
    assert len(calls) == 3

    def broken(g):
        raise RuntimeError("simulator failed")

    with BatchStream(broken, torch.Generator(), 2, prefetch=True) as s, \
            pytest.raises(RuntimeError, match="simulator failed"):
        next(s)
    with pytest.raises(ValueError, match="steps"):
        BatchStream(draw, torch.Generator(), -1)
    with pytest.raises(ValueError, match="prefetch"):
        TrainingConfig(prefetch="yes")


def _config(**kw):
    return TrainingConfig(**{"steps": 24, "eval_every": 4, "batch_size": 32, "warmup_steps": 4,
                             "snr_range": (50.0, 200.0), "device": "cpu", "seed": 3,
                             "label_noise": 0.05, **kw})


class _Killed(Exception):
    pass


def test_prefetch_trains_the_same_weights_and_resumes(tmp_path):
    prob = LinearGaussianProblem()
    ts = prob.training_set(n=400)

    def train(cfg, **kw):
        return train_model(ts, prob.architecture, cfg, name="t", version="0.0.1", **kw)

    serial, hist = train(_config(), log=None)
    ahead, hist2 = train(_config(prefetch=True), log=None)
    for k, v in serial.network.state_dict().items():
        torch.testing.assert_close(ahead.network.state_dict()[k], v, rtol=0, atol=0)
    assert hist2["train_loss"] == hist["train_loss"]

    def kill(msg):
        if msg.startswith("step     12/"):
            raise _Killed(msg)

    path = tmp_path / "run.safetensors"
    with pytest.raises(_Killed):
        train(_config(prefetch=True, checkpoint_every=4), log=kill, checkpoint=path)
    assert read_checkpoint(path).step == 12
    # continue without prefetching: the checkpoint does not depend on it
    resumed, _ = train(_config(checkpoint_every=4), log=None, checkpoint=path)
    for k, v in serial.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[k], v, rtol=0, atol=0)
    # where it ran, not what decides the result: in the history, not the settings
    assert ahead.metadata.training["history"]["prefetch"] is True
    assert "prefetch" not in ahead.metadata.training["config"]
