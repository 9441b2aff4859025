"""TrainingConfig.feature_regression: an auxiliary linear head on the conditioning features."""

import pytest
import torch
from linear_gaussian import LinearGaussianProblem

from specutils_cinn.checkpoint import read_checkpoint
from specutils_cinn.training import TrainingConfig, train_model


class _Killed(Exception):
    pass


def _config(**kw):
    return TrainingConfig(**{"steps": 16, "eval_every": 4, "batch_size": 32, "warmup_steps": 4,
                             "snr_range": (50.0, 200.0), "device": "cpu", "seed": 3, **kw})


def _train(ts, prob, cfg, **kw):
    return train_model(ts, prob.architecture, cfg, name="aux-test", version="0.0.1", **kw)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_weights_are_refused(bad):
    with pytest.raises(ValueError, match="feature_regression"):
        _config(feature_regression=bad)


def test_the_head_changes_the_training_is_recorded_and_resumes_exactly(tmp_path):
    prob = LinearGaussianProblem()
    ts = prob.training_set(n=300)
    plain, _ = _train(ts, prob, _config(), log=None)
    aux, _ = _train(ts, prob, _config(feature_regression=1.0), log=None)
    # the default records nothing new; the weight is recorded when set
    assert "feature_regression" not in plain.metadata.training["config"]
    assert aux.metadata.training["config"]["feature_regression"] == 1.0
    # the head is not part of the model, but it changed the network's training
    assert aux.network.state_dict().keys() == plain.network.state_dict().keys()
    assert any(not torch.equal(a, b) for a, b in zip(aux.network.state_dict().values(),
                                                      plain.network.state_dict().values(),
                                                      strict=True))
    # a killed run resumes (head included) to the weights of the uninterrupted one
    path = tmp_path / "run.safetensors"

    def kill(msg):
        if msg.startswith("step      8/"):
            raise _Killed(msg)

    cfg = _config(feature_regression=1.0, checkpoint_every=4)
    with pytest.raises(_Killed):
        _train(ts, prob, cfg, log=kill, checkpoint=path)
    saved = read_checkpoint(path).network
    assert {k for k in saved if k.startswith("feature_regression_head.")} == {
        "feature_regression_head.weight", "feature_regression_head.bias"}
    resumed, _ = _train(ts, prob, cfg, log=None, checkpoint=path)
    for k, v in aux.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[k], v, rtol=0, atol=0)
