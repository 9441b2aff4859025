"""Training sets: noise-free spectra on a model grid with their labels, and their ``.npz`` files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..parameters import parameter_unit
from ..wavelength_grid import WavelengthGrid

__all__ = ["TrainingSet", "load_training_set", "save_training_set"]


@dataclass
class TrainingSet:
    """Noise-free spectra on a model grid with their labels.

    Attributes
    ----------
    flux : ndarray, shape (N, npix)
        Continuum-normalized flux on ``grid``.
    labels : ndarray, shape (N, D)
        Labels in the units of `specutils_cinn.parameters.parameter_unit`.
    parameters : list of str
        Label names, in column order.
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        The wavelength grid of ``flux``.
    resolving_power : float or dict
        Resolving power of ``flux`` (per segment name when a dict).
    provenance : dict
        Where the spectra came from (recorded in the model metadata).
    groups : ndarray of int, shape (N,), optional
        Group (e.g. star) of each spectrum: the validation split never separates a group, so
        several realizations of one star (different vsini, say) stay on one side. Default: every
        spectrum is its own group.
    """

    flux: np.ndarray
    labels: np.ndarray
    parameters: list[str]
    grid: WavelengthGrid
    resolving_power: float | dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.flux.ndim != 2 or self.flux.shape[1] != self.grid.npix:
            raise ValueError(
                f"flux must have shape (N, {self.grid.npix}) for this grid, got {self.flux.shape}"
            )
        if self.labels.shape != (self.flux.shape[0], len(self.parameters)):
            raise ValueError(
                f"labels must have shape ({self.flux.shape[0]}, {len(self.parameters)}), "
                f"got {self.labels.shape}"
            )
        for p in self.parameters:
            parameter_unit(p)
        if not (np.isfinite(self.flux).all() and np.isfinite(self.labels).all()):
            raise ValueError("training flux and labels must be finite")
        if self.groups is None:
            self.groups = np.arange(self.flux.shape[0])
        self.groups = np.asarray(self.groups)
        if self.groups.shape != (self.flux.shape[0],):
            raise ValueError(
                f"groups must have shape ({self.flux.shape[0]},), got {self.groups.shape}"
            )


def save_training_set(path: str | Path, ts: TrainingSet) -> None:
    """Write a `TrainingSet` to a compressed ``.npz`` file (no pickled objects).

    Parameters
    ----------
    path : path-like
        The ``.npz`` file to write.
    ts : TrainingSet
        The training set (flux stored as float32, labels as float64).
    """
    np.savez_compressed(
        path,
        flux=ts.flux.astype(np.float32),
        labels=ts.labels.astype(np.float64),
        parameters=np.array(ts.parameters),
        grid=np.array(json.dumps(ts.grid.to_dict())),
        resolving_power=np.array(json.dumps(ts.resolving_power)),
        provenance=np.array(json.dumps(ts.provenance)),
        groups=np.asarray(ts.groups),
    )


def load_training_set(path: str | Path, parameters: Sequence[str] | None = None) -> TrainingSet:
    """Read a training set written by `save_training_set`.

    Parameters
    ----------
    path : path-like
        The ``.npz`` file.
    parameters : sequence of str, optional
        Subset (and order) of the labels to keep; default all.

    Returns
    -------
    TrainingSet

    Raises
    ------
    ValueError
        If the file lacks one of ``parameters``.
    """
    with np.load(path, allow_pickle=False) as d:
        names = [str(p) for p in d["parameters"]]
        labels = d["labels"]
        if parameters is not None:
            missing = [p for p in parameters if p not in names]
            if missing:
                raise ValueError(f"{path}: no labels {missing}; the file has {names}")
            labels = labels[:, [names.index(p) for p in parameters]]
            names = list(parameters)
        return TrainingSet(
            flux=d["flux"].astype(np.float32),
            labels=labels,
            parameters=names,
            grid=WavelengthGrid.from_dict(json.loads(str(d["grid"]))),
            resolving_power=json.loads(str(d["resolving_power"])),
            provenance=json.loads(str(d["provenance"])),
            groups=d["groups"] if "groups" in d.files else None,
        )
