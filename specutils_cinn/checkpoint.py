"""Resumable training: the whole state of a training run in one safetensors file.

A run on a 2-core machine takes hours and a session can end at any moment. With a checkpoint
path `~specutils_cinn.training.train_model` (and the emulator's
`~specutils_cinn.emulator.train_emulator`) writes, at its evaluation steps, everything the
rest of the run depends on: the network's weights, the best weights so far, the optimizer's
moments, the learning-rate schedule, the state of the training generator and of torch's
global generator, and the loss history. Rerunning the same training with the same path
continues from the last checkpoint and ends with exactly the weights of an uninterrupted run
on the same device (tested).

The file is safetensors (tensors) plus JSON in its metadata; nothing is unpickled. A
fingerprint of everything that decides the run (training settings, architecture, data,
parameters, wavelength grid, ...) is stored with it, and a checkpoint of another run is refused
with an error that says so, instead of silently continuing the wrong run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "TrainingCheckpoint", "array_digest", "read_checkpoint",
           "run_fingerprint", "write_checkpoint"]

#: File format name and version written into every checkpoint's metadata.
CHECKPOINT_FORMAT = "specutils-cinn training checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A training checkpoint cannot be used: unreadable, another format, or another run."""


def run_fingerprint(description: Mapping[str, Any]) -> str:
    """SHA-256 of a JSON description of everything that decides a training run.

    Parameters
    ----------
    description : mapping
        JSON-serializable (values that are not, e.g. paths, are written with ``str``).

    Returns
    -------
    str
        Hex digest.
    """
    text = json.dumps(description, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def array_digest(*arrays: Any) -> str:
    """SHA-256 of arrays' dtypes, shapes and bytes: the identity of a run's training data.

    Parameters
    ----------
    *arrays : array-like
        In a fixed order.

    Returns
    -------
    str
        Hex digest.
    """
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class TrainingCheckpoint:
    """The state of a training run after ``step`` optimization steps.

    Attributes
    ----------
    step : int
        Optimization steps done (always an evaluation step).
    fingerprint : str
        `run_fingerprint` of the run it belongs to.
    network, best : dict of str to torch.Tensor
        State dicts of the network now and of the best weights so far.
    best_loss : float
        The loss that picked ``best`` (inf before any finite loss).
    best_step : int
        The step of ``best`` (0 before any finite loss).
    optimizer : dict
        ``torch.optim.Optimizer.state_dict()``.
    scheduler : dict
        The learning-rate scheduler's ``state_dict()`` (JSON-serializable: a ``LambdaLR``
        stores None for its lambdas, which are code).
    generator_state, global_state : torch.Tensor
        ``torch.Generator.get_state()`` of the training generator and ``torch.get_rng_state()``.
    history : dict
        The loss history so far.
    seconds : float
        Training time so far.
    extra : dict
        Loop-specific JSON state (e.g. the device type of a cINN run, the emulator's training
        phase and early-stopping counter).
    """

    step: int
    fingerprint: str
    network: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    best_loss: float
    best_step: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    generator_state: torch.Tensor
    global_state: torch.Tensor
    history: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().clone()


def write_checkpoint(path: str | os.PathLike[str], checkpoint: TrainingCheckpoint) -> Path:
    """Write a checkpoint atomically (a killed write leaves the previous one intact).

    Parameters
    ----------
    path : path-like
        The file (``.safetensors``); its folder is created.
    checkpoint : `TrainingCheckpoint`
        What to write.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, state in (("network", checkpoint.network), ("best", checkpoint.best)):
        tensors.update({f"{prefix}/{k}": _cpu(v) for k, v in state.items()})
    opt_state = checkpoint.optimizer.get("state", {})
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entries in opt_state.items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{idx}/{name}"] = _cpu(value)
            else:
                scalars.setdefault(str(idx), {})[name] = value
    tensors["rng/generator"] = _cpu(checkpoint.generator_state)
    tensors["rng/global"] = _cpu(checkpoint.global_state)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(CHECKPOINT_VERSION),
        "step": str(int(checkpoint.step)),
        "fingerprint": checkpoint.fingerprint,
        "best_loss": repr(float(checkpoint.best_loss)),
        "best_step": str(int(checkpoint.best_step)),
        "optimizer_groups": json.dumps(checkpoint.optimizer.get("param_groups", [])),
        "optimizer_scalars": json.dumps(scalars),
        "scheduler": json.dumps(checkpoint.scheduler),
        "history": json.dumps(checkpoint.history),
        "seconds": repr(float(checkpoint.seconds)),
        "extra": json.dumps(checkpoint.extra),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike[str], fingerprint: str | None = None
                    ) -> TrainingCheckpoint:
    """Read a checkpoint written by `write_checkpoint`.

    Parameters
    ----------
    path : path-like
        The file.
    fingerprint : str, optional
        The `run_fingerprint` of the run that wants to continue; a checkpoint of another run
        is refused.

    Returns
    -------
    `TrainingCheckpoint`

    Raises
    ------
    CheckpointError
        If the file is not a readable checkpoint of this format, or belongs to another run.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open API
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported the same way
        raise CheckpointError(f"{path} is not a readable training checkpoint: {exc}") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a specutils-cinn training checkpoint")
    if meta.get("format_version") != str(CHECKPOINT_VERSION):
        raise CheckpointError(f"{path} has checkpoint format version "
                              f"{meta.get('format_version')}; this version reads "
                              f"{CHECKPOINT_VERSION}")
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{path} is the checkpoint of another training run (different settings, data or "
            "architecture); delete it or give another checkpoint path to start afresh")
    try:
        network = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("network/")}
        best = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("best/")}
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, idx, name = key.split("/", 2)
                state.setdefault(int(idx), {})[name] = value
        for idx, entries in json.loads(meta["optimizer_scalars"]).items():
            state.setdefault(int(idx), {}).update(entries)
        return TrainingCheckpoint(
            step=int(meta["step"]), fingerprint=meta["fingerprint"], network=network,
            best=best, best_loss=float(meta["best_loss"]), best_step=int(meta["best_step"]),
            optimizer={"state": state, "param_groups": json.loads(meta["optimizer_groups"])},
            scheduler=json.loads(meta["scheduler"]),
            generator_state=tensors["rng/generator"], global_state=tensors["rng/global"],
            history=json.loads(meta["history"]), seconds=float(meta["seconds"]),
            extra=json.loads(meta.get("extra", "{}")))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} is an incomplete training checkpoint: {exc}") from exc
