"""Resumable training (specutils_cinn/checkpoint.py): a killed run continues to the same weights."""

import numpy as np
import pytest
import torch
from linear_gaussian import LinearGaussianProblem

from specutils_cinn.checkpoint import (
    CheckpointError,
    read_checkpoint,
    run_fingerprint,
    write_checkpoint,
)
from specutils_cinn.training import TrainingConfig, train_model


class _Killed(Exception):
    pass


def _kill_at(step):
    def log(msg):
        if msg.startswith(f"step {step:6d}/"):
            raise _Killed(msg)
    return log


def _config(**kw):
    return TrainingConfig(**{"steps": 24, "eval_every": 4, "batch_size": 32, "warmup_steps": 4,
                             "snr_range": (50.0, 200.0), "device": "cpu", "seed": 3, **kw})


def _train(ts, prob, cfg, **kw):
    return train_model(ts, prob.architecture, cfg, name="ckpt-test", version="0.0.1", **kw)


def _weights(model):
    return {k: v.clone() for k, v in model.network.state_dict().items()}


def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    prob = LinearGaussianProblem()
    ts = prob.training_set(n=400)
    cfg = _config(checkpoint_every=8)
    straight, hist = _train(ts, prob, cfg, log=None)
    path = tmp_path / "run.safetensors"
    with pytest.raises(_Killed):
        _train(ts, prob, cfg, log=_kill_at(16), checkpoint=path)
    state = read_checkpoint(path)
    assert state.step == 16 and state.history["step"] == [4, 8, 12, 16]
    lines = []
    resumed, hist2 = _train(ts, prob, cfg, log=lines.append, checkpoint=path)
    assert lines[0].startswith(f"resuming from {path} at step 16/24")
    for k, v in _weights(straight).items():
        torch.testing.assert_close(resumed.network.state_dict()[k], v, rtol=0, atol=0)
    for key in ("step", "train_loss", "val_loss", "best_step"):
        np.testing.assert_array_equal(hist2[key], hist[key])
    assert read_checkpoint(path).step == 24          # the finished run's last checkpoint
    # a checkpoint that is not a multiple of eval_every is refused before any work
    with pytest.raises(ValueError, match="multiple of eval_every"):
        _config(checkpoint_every=6)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    prob = LinearGaussianProblem()
    ts = prob.training_set(n=400)
    path = tmp_path / "run.safetensors"
    _train(ts, prob, _config(steps=8), log=None, checkpoint=path)
    with pytest.raises(CheckpointError, match="another training run"):
        _train(ts, prob, _config(steps=8, learning_rate=5e-4), log=None, checkpoint=path)
    other = prob.training_set(n=300)
    with pytest.raises(CheckpointError, match="another training run"):
        _train(other, prob, _config(steps=8), log=None, checkpoint=path)
    # the thread count is not part of its identity; the kind of device is
    _train(ts, prob, _config(steps=8, threads=1), log=None, checkpoint=path)
    state = read_checkpoint(path)
    assert state.extra == {"device": "cpu"}
    state.extra = {"device": "cuda"}
    write_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="written by a run on cuda; this run is on cpu"):
        _train(ts, prob, _config(steps=8), log=None, checkpoint=path)


def test_unreadable_or_foreign_files_are_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable training checkpoint"):
        read_checkpoint(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "something else"})
    with pytest.raises(CheckpointError, match="not a specutils-cinn training checkpoint"):
        read_checkpoint(foreign)


def test_write_is_atomic_and_round_trips(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    from specutils_cinn.checkpoint import TrainingCheckpoint

    ck = TrainingCheckpoint(step=4, fingerprint=run_fingerprint({"a": 1}),
                            network=net.state_dict(), best=net.state_dict(), best_loss=float("inf"),
                            best_step=0, optimizer=opt.state_dict(), scheduler={"last_epoch": 4},
                            generator_state=torch.Generator().get_state(),
                            global_state=torch.get_rng_state(), history={"step": [4]})
    path = write_checkpoint(tmp_path / "c" / "x.safetensors", ck)
    assert [p.name for p in path.parent.iterdir()] == ["x.safetensors"]     # no temporary left
    back = read_checkpoint(path, run_fingerprint({"a": 1}))
    assert back.best_loss == float("inf") and back.scheduler == {"last_epoch": 4}
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    opt2.load_state_dict(back.optimizer)
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"],
                               opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(CheckpointError, match="another training run"):
        read_checkpoint(path, run_fingerprint({"a": 2}))


def test_train_command_continues_from_its_checkpoint(tmp_path, capsys):
    from test_loop import write_config

    from specutils_cinn import cli
    from specutils_cinn.model import CINNModel

    write_config(tmp_path, "steps = 6\neval_every = 2\ncheckpoint_every = 2\nbatch_size = 8\n"
                 'snr_range = [100.0, 100.0]\ndevice = "cpu"\nthreads = 1\n')
    ck = tmp_path / "ck.safetensors"
    assert cli.main(["train", str(tmp_path / "cfg.toml"), "--checkpoint", str(ck)]) == 0
    first = CINNModel.load(tmp_path / "out")
    assert read_checkpoint(ck).step == 6
    capsys.readouterr()
    assert cli.main(["train", str(tmp_path / "cfg.toml"), "-o", str(tmp_path / "again"),
                     "--checkpoint", str(ck)]) == 0
    assert "resuming from" in capsys.readouterr().out
    again = CINNModel.load(tmp_path / "again")
    assert again.sha256 == first.sha256          # a finished checkpoint: the same weights
