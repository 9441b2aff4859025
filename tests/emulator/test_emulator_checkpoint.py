"""Resumable emulator training: a run killed in either phase continues to the same emulator."""

import numpy as np
import pytest
import torch
from test_emulator import GRID, NAMES, analytic_flux, draw

from specutils_cinn.checkpoint import CheckpointError, read_checkpoint
from specutils_cinn.emulator import EmulatorConfig, train_emulator


class _Killed(Exception):
    pass


def _kill_at(line_start):
    def log(msg):
        if msg.startswith(line_start):
            raise _Killed(msg)
    return log


CFG = EmulatorConfig(n_components=12, hidden=(32, 32), steps=60, batch_size=64, threads=1,
                     learning_rate=5e-3, warmup_steps=10, eval_every=10, patience=100,
                     finetune_steps=40, seed=1)


def _train(labels, cfg=CFG, **kw):
    return train_emulator(labels, analytic_flux(labels), NAMES, GRID, cfg, device="cpu", **kw)


def _same(a, b):
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)


@pytest.mark.parametrize("kill", ["step     30", "ftstep     20"])
def test_killed_emulator_run_resumes_to_the_same_emulator(tmp_path, kill):
    labels = draw(120, 3)
    straight, hist = _train(labels, log=None)
    path = tmp_path / "emu.safetensors"
    with pytest.raises(_Killed):
        _train(labels, log=_kill_at(kill), checkpoint=path, checkpoint_every=10)
    state = read_checkpoint(path)
    assert state.extra["phase"] == ("ft" if kill.startswith("ft") else "")
    lines = []
    resumed, hist2 = _train(labels, log=lines.append, checkpoint=path, checkpoint_every=10)
    assert lines[0].startswith(f"resuming from {path}")
    _same(straight, resumed)
    assert hist2["step"] == hist["step"] and hist2["val_mse"] == hist["val_mse"]
    last = read_checkpoint(path).extra
    assert last["phase"] == "ft" and last["done"]


def test_emulator_checkpoint_of_another_run_is_refused(tmp_path):
    labels = draw(120, 3)
    path = tmp_path / "emu.safetensors"
    cfg = EmulatorConfig(n_components=8, hidden=(16,), steps=20, eval_every=10, threads=1)
    _train(labels, cfg, log=None, checkpoint=path)
    with pytest.raises(CheckpointError, match="another training run"):
        _train(draw(120, 4), cfg, log=None, checkpoint=path)
    with pytest.raises(ValueError, match="multiple of eval_every"):
        _train(labels, cfg, log=None, checkpoint=path, checkpoint_every=15)
    # a finished run's checkpoint gives the finished emulator again
    a, _ = _train(labels, cfg, log=None)
    b, _ = _train(labels, cfg, log=None, checkpoint=path)
    _same(a, b)
    assert np.isfinite(read_checkpoint(path).seconds)
