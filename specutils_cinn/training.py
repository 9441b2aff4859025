"""Training a cINN by maximum likelihood on noise-free spectra with fresh noise every step.

The training set holds noise-free, continuum-normalised spectra on the model's wavelength grid
and their labels. Every optimisation step draws, for each spectrum in the batch, a new S/N
(log-uniform over ``snr_range``, per Angstrom), Gaussian noise with photon-noise scaling,
randomly masked pixels and gaps, and optionally a smooth multiplicative continuum error. The
network sees the noisy flux, its uncertainty and the mask, so one model serves spectra of any
quality in the training range.

Instead of a fixed training set, `train_model` also accepts a simulator that draws fresh
noise-free spectra every step (e.g. `specutils_cinn.simulation.EmulatorSimulator`): validation
then uses a fixed, seeded simulated set, and a held-out set of real synthetic spectra can be
monitored alongside.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .devices import resolve_device
from .flows import build_cinn
from .flows.conditioning import encode_inputs
from .grid import WavelengthGrid
from .inputs.normalization import Normalization
from .model import CINNModel, ModelMetadata
from .parameters import parameter_unit

__all__ = [
    "SELECTION_REALISATIONS",
    "TrainingConfig",
    "TrainingSet",
    "augment_batch",
    "load_training_set",
    "save_training_set",
    "train_model",
    "train_from_config",
]

#: Fixed noisy realisations per spectrum of a ``selection`` set (see `train_model`).
SELECTION_REALISATIONS = 8


@dataclass
class TrainingConfig:
    """Optimisation and augmentation settings.

    Attributes
    ----------
    steps : int
        Optimisation steps (batches).
    batch_size : int
        Spectra per step.
    learning_rate : float
        Peak Adam learning rate; decays with a cosine schedule after a linear warm-up.
    weight_decay : float
        AdamW weight decay.
    warmup_steps : int
        Linear learning-rate warm-up steps.
    grad_clip : float
        Gradient-norm clipping threshold.
    validation_fraction : float
        Fraction of the training set held out to pick the best weights and report metrics.
    validation_size : int
        Number of simulated validation spectra (drawn once, seeded) when training on a
        simulator; unused with a training set.
    eval_every : int
        Steps between validation evaluations.
    seed : int
        Seed of the split, the initial weights and every augmentation draw.
    snr_range : tuple of float
        S/N per Angstrom drawn log-uniformly per spectrum and step.
    masked_fraction : float
        Upper limit of the fraction of isolated pixels masked per spectrum (uniform from 0).
    max_gaps : int
        Upper limit of contiguous gaps per spectrum (uniform integer from 0).
    max_gap_fraction : float
        Longest gap as a fraction of the number of pixels.
    continuum_error : float
        Amplitude (1 sigma) of a random linear multiplicative continuum error per segment.
    label_noise : float
        Standard deviation of Gaussian jitter added to the standardised labels every step; a
        little (e.g. 0.03) regularises the density of small training sets, at the cost of
        slightly wider posteriors.
    photon_noise : bool
        If True the noise scales as the square root of the flux (photon noise; the reported
        uncertainty is computed from the *noisy* flux, as a pipeline would, so it carries no
        information about the noise-free spectrum); if False it is constant per spectrum.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    threads : int or None
        CPU threads for torch (None keeps torch's default).
    """

    steps: int = 5000
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 200
    grad_clip: float = 10.0
    validation_fraction: float = 0.1
    validation_size: int = 1024
    eval_every: int = 250
    seed: int = 0
    snr_range: tuple[float, float] = (10.0, 500.0)
    masked_fraction: float = 0.02
    max_gaps: int = 2
    max_gap_fraction: float = 0.02
    continuum_error: float = 0.0
    label_noise: float = 0.0
    photon_noise: bool = True
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        self.snr_range = tuple(float(s) for s in self.snr_range)  # type: ignore[assignment]
        if len(self.snr_range) != 2 or not 0 < self.snr_range[0] <= self.snr_range[1]:
            raise ValueError(f"snr_range must be (lo, hi) with 0 < lo <= hi, got {self.snr_range}")
        if min(self.steps, self.batch_size, self.eval_every, self.validation_size) < 1:
            raise ValueError("steps, batch_size, eval_every and validation_size must be positive")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in (0, 1)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        """Build from a dict, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown training option(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**d)


@dataclass
class TrainingSet:
    """Noise-free spectra on a model grid with their labels.

    Attributes
    ----------
    flux : ndarray, shape (N, npix)
        Continuum-normalised flux on ``grid``.
    labels : ndarray, shape (N, D)
        Labels in the units of `specutils_cinn.parameters.parameter_unit`.
    parameters : list of str
        Label names, in column order.
    grid : `~specutils_cinn.grid.WavelengthGrid`
        The wavelength grid of ``flux``.
    resolving_power : float or dict
        Resolving power of ``flux`` (per segment name when a dict).
    provenance : dict
        Where the spectra came from (recorded in the model metadata).
    groups : ndarray of int, shape (N,), optional
        Group (e.g. star) of each spectrum: the validation split never separates a group, so
        several realisations of one star (different vsini, say) stay on one side. Default: every
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
    """Write a `TrainingSet` to a compressed ``.npz`` file (no pickled objects)."""
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


def augment_batch(
    flux: torch.Tensor,
    pixel_width: torch.Tensor,
    segment_index: torch.Tensor,
    config: TrainingConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn noise-free spectra into observed-like ones.

    Parameters
    ----------
    flux : Tensor, shape (B, npix)
        Noise-free normalised flux.
    pixel_width : Tensor, shape (npix,)
        Pixel widths in Angstrom.
    segment_index : Tensor, shape (npix,)
        Segment number of each pixel (continuum errors are drawn per segment).
    config : TrainingConfig
        Augmentation settings.
    generator : `torch.Generator`
        Source of randomness (on the device of ``flux``).

    Returns
    -------
    flux, sigma : Tensor, shape (B, npix)
        Noisy flux and its 1-sigma uncertainty.
    valid : Tensor of bool, shape (B, npix)
        False for masked pixels and gaps.
    """
    b, npix = flux.shape
    dev = flux.device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=dev)

    lo, hi = config.snr_range
    snr_aa = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * uniform(b, 1))
    snr_pix = snr_aa * torch.sqrt(pixel_width)[None, :]
    obs = flux
    if config.continuum_error > 0:
        n_seg = int(segment_index.max()) + 1
        x = torch.linspace(-1.0, 1.0, npix, device=dev)
        coef = config.continuum_error * torch.randn(b, n_seg, 2, generator=generator, device=dev)
        tilt = 1.0 + coef[:, segment_index, 0] + coef[:, segment_index, 1] * x[None, :]
        obs = obs * tilt
    if config.photon_noise:
        true_sigma = torch.sqrt(obs.clamp(min=0.01)) / snr_pix
        noisy = obs + true_sigma * torch.randn(b, npix, generator=generator, device=dev)
        sigma = torch.sqrt(noisy.clamp(min=0.01)) / snr_pix
    else:
        sigma = (1.0 / snr_pix).expand(b, npix)
        noisy = obs + sigma * torch.randn(b, npix, generator=generator, device=dev)
    valid = uniform(b, npix) >= config.masked_fraction * uniform(b, 1)
    if config.max_gaps > 0 and config.max_gap_fraction > 0:
        max_len = max(1, int(config.max_gap_fraction * npix))
        n_gaps = torch.randint(0, config.max_gaps + 1, (b,), generator=generator, device=dev)
        pix = torch.arange(npix, device=dev)
        for g in range(config.max_gaps):
            start = (uniform(b) * npix).long()
            length = (uniform(b) * max_len).long() + 1
            in_gap = (pix[None, :] >= start[:, None]) & (pix[None, :] < (start + length)[:, None])
            valid &= ~(in_gap & (g < n_gaps)[:, None])
    return noisy, sigma, valid


def renormalize_batch(
    flux: torch.Tensor,
    sigma: torch.Tensor,
    valid: torch.Tensor,
    grid: WavelengthGrid,
    normalization: Normalization | Mapping[str, Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply the model's input normalization to augmented (noisy) training spectra.

    For the kind ``"pseudo-continuum"`` the noisy spectra are divided by the same clipped
    polynomial continuum (`specutils_cinn.inputs.Normalization.apply`) that the estimator
    fits to observed spectra, so training and inference see the same
    convention, noise included (a clipped fit to a noisy spectrum sits slightly higher than
    one to the noise-free spectrum). Other kinds are returned unchanged.

    Parameters
    ----------
    flux, sigma : Tensor, shape (B, npix)
        Noisy flux and its uncertainty.
    valid : Tensor of bool, shape (B, npix)
        Usable pixels.
    grid : `~specutils_cinn.grid.WavelengthGrid`
        The model grid (one continuum per segment).
    normalization : `~specutils_cinn.inputs.Normalization` or dict
        The model's normalization convention (``kind``, ``degree``, ``n_iter``).

    Returns
    -------
    flux, sigma, valid : Tensor
        Normalised flux and uncertainty (NaN where the fit failed) and the updated mask.
    """
    norm = _as_normalization(normalization)
    if not norm.fits_continuum:
        return flux, sigma, valid
    f, s, v = norm.apply(flux.cpu().numpy(), sigma.cpu().numpy(), valid.cpu().numpy(), grid)
    dev = flux.device
    return (torch.as_tensor(f, dtype=flux.dtype, device=dev),
            torch.as_tensor(s, dtype=sigma.dtype, device=dev),
            torch.as_tensor(v, device=dev))


def _as_normalization(normalization: Normalization | Mapping[str, Any]) -> Normalization:
    if isinstance(normalization, Normalization):
        return normalization
    return Normalization.from_dict(normalization)


def _lr_factor(step: int, config: TrainingConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Source:
    """Training data for `train_model`: a fixed training set or a simulator."""

    parameters: list[str]
    grid: WavelengthGrid
    resolving_power: float | dict[str, Any]
    provenance: dict[str, Any]
    mean: np.ndarray
    std: np.ndarray
    ranges: dict[str, tuple[float, float]]
    info: dict[str, Any]

    def standardise(self, labels: Any, device: torch.device) -> torch.Tensor:
        lab = torch.as_tensor(labels, dtype=torch.float64, device=device)
        mean = torch.as_tensor(self.mean, device=device)
        std = torch.as_tensor(self.std, device=device)
        return ((lab - mean) / std).to(torch.float32)


class _SetSource(_Source):
    """Batches drawn from a `TrainingSet`, with a validation split by group."""

    def __init__(self, ts: TrainingSet, config: TrainingConfig, device: torch.device) -> None:
        self.parameters, self.grid = list(ts.parameters), ts.grid
        self.resolving_power, self.provenance = ts.resolving_power, ts.provenance
        rng = np.random.default_rng(config.seed)
        groups = np.unique(ts.groups)
        n_val = max(1, int(round(config.validation_fraction * groups.size)))
        if groups.size - n_val < 2:
            raise ValueError(f"training set too small: {groups.size} groups of spectra")
        in_val = np.isin(ts.groups, rng.permutation(groups)[:n_val])
        val_idx, train_idx = np.flatnonzero(in_val), np.flatnonzero(~in_val)
        self.mean = ts.labels[train_idx].mean(axis=0)
        std = ts.labels[train_idx].std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        self.ranges = {p: (ts.labels[:, j].min(), ts.labels[:, j].max())
                       for j, p in enumerate(ts.parameters)}
        self.info = {
            "n_train": int(len(train_idx)),
            "n_validation": int(len(val_idx)),
            "validation_groups": sorted(int(g) for g in np.unique(ts.groups[val_idx])),
        }
        self._flux = torch.as_tensor(ts.flux, dtype=torch.float32, device=device)
        self._z = self.standardise(ts.labels, device)
        self._val = torch.as_tensor(val_idx, device=device)
        self._train = torch.as_tensor(train_idx, device=device)
        self._batch = config.batch_size

    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._flux[self._val], self._z[self._val]

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pick = self._train[torch.randint(len(self._train), (self._batch,), generator=generator,
                                         device=self._train.device)]
        return self._flux[pick], self._z[pick]


class _SimulatorSource(_Source):
    """Fresh simulated batches; a fixed, seeded simulated validation set."""

    #: Prior draws for the label mean and standard deviation.
    N_LABEL_STATS = 20000

    def __init__(self, sim: Any, config: TrainingConfig, device: torch.device) -> None:
        for attr in ("parameters", "grid", "resolving_power", "provenance", "sample"):
            if not hasattr(sim, attr):
                raise TypeError(f"a simulator needs the attribute {attr!r} (see "
                                "specutils_cinn.simulation.SpectrumSimulator)")
        self.sim = sim
        self.parameters, self.grid = list(sim.parameters), sim.grid
        self.resolving_power, self.provenance = sim.resolving_power, dict(sim.provenance)
        for p in self.parameters:
            parameter_unit(p)
        gen = torch.Generator(device=device)
        gen.manual_seed(config.seed + 3)
        n = self.N_LABEL_STATS
        if hasattr(sim, "sample_labels"):
            labels = sim.sample_labels(n, gen)
        else:
            n = config.validation_size
            labels = self._draw(n, gen, config.batch_size)[1]
        labels = labels.double().cpu().numpy()
        self.mean = labels.mean(axis=0)
        std = labels.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        ranges = dict(getattr(sim, "parameter_ranges", None) or {})
        self.ranges = {p: tuple(ranges.get(p, (labels[:, j].min(), labels[:, j].max())))
                       for j, p in enumerate(self.parameters)}
        self._device, self._batch = device, config.batch_size
        gen.manual_seed(config.seed + 2)
        flux, labels = self._draw(config.validation_size, gen, config.batch_size)
        self._val = (flux, self.standardise(labels, device))
        self.info = {
            "simulated": True,
            "n_train": int(config.steps * config.batch_size),
            "n_validation": int(config.validation_size),
            "label_statistics": f"{n} prior draws (seed {config.seed + 3})",
            "validation_seed": config.seed + 2,
        }

    def _draw(self, n: int, gen: torch.Generator, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self.sim.sample(min(chunk, n - i), gen) for i in range(0, n, chunk)]
        return (torch.cat([p[0] for p in parts]).to(torch.float32),
                torch.cat([p[1] for p in parts]))

    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._val

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        flux, labels = self.sim.sample(self._batch, generator)
        return flux.to(torch.float32), self.standardise(labels, self._device)


def _holdout_tensors(
    holdout: TrainingSet, source: _Source, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise-free flux and standardised labels of a held-out set, in the model's order."""
    if holdout.grid != source.grid:
        raise ValueError("the held-out set must be on the model grid "
                         f"({source.grid.to_dict()}), got {holdout.grid.to_dict()}")
    missing = [p for p in source.parameters if p not in holdout.parameters]
    if missing:
        raise ValueError(f"the held-out set has no labels {missing}")
    cols = [holdout.parameters.index(p) for p in source.parameters]
    return (torch.as_tensor(holdout.flux, dtype=torch.float32, device=device),
            source.standardise(holdout.labels[:, cols], device))


def train_model(
    training_set: TrainingSet | Any,
    architecture: dict[str, Any],
    config: TrainingConfig,
    *,
    name: str,
    version: str,
    description: str = "",
    normalization: Normalization | Mapping[str, Any] | None = None,
    parameter_ranges: dict[str, Sequence[float]] | None = None,
    holdout: TrainingSet | None = None,
    selection: TrainingSet | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[CINNModel, dict[str, Any]]:
    """Train a cINN on a training set or a simulator and return the model and its history.

    Parameters
    ----------
    training_set : TrainingSet or simulator
        Noise-free spectra and labels, or a simulator (duck-typed, see
        `specutils_cinn.simulation.SpectrumSimulator`: ``parameters``, ``grid``,
        ``resolving_power``, ``provenance`` and ``sample(n, generator) -> (flux, labels)``)
        that draws fresh noise-free spectra for every step. With a simulator the label
        standardisation comes from a large prior draw (``sample_labels`` if it has one), the
        validation set is ``config.validation_size`` simulated spectra drawn once (seed
        ``config.seed + 2``), and the training ranges are its ``parameter_ranges``.
    architecture : dict
        Network architecture (see `specutils_cinn.flows.build_cinn`); ``n_params`` and
        ``npix`` are filled in from the training data.
    config : TrainingConfig
        Optimisation and augmentation settings.
    name, version : str
        Model name and version recorded in the metadata.
    description : str, optional
        One-line description for ``specutils-cinn models``.
    normalization : `~specutils_cinn.inputs.Normalization` or dict, optional
        The input normalization convention; default ``{"kind": "continuum"}``.
    parameter_ranges : dict, optional
        Training-range limits per parameter (default: the label minimum and maximum, or the
        simulator's prior ranges).
    holdout : TrainingSet, optional
        Held-out noise-free spectra on the model grid (e.g. degraded synthetic spectra of
        stars no emulator was trained on) whose loss, on one fixed noisy realisation, is
        recorded in the history as ``holdout_loss`` (not used to pick the weights).
    selection : TrainingSet, optional
        Noise-free spectra on the model grid that pick the weights instead of the validation
        set: the weights kept are those of the lowest loss on `SELECTION_REALISATIONS` fixed
        noisy realisations of each spectrum (``selection_loss`` in the history). Meant for
        training on emulated spectra: synthetic spectra the emulator was not fitted to stop the
        network where it starts learning the emulator's own errors. Must not overlap the
        stars used to validate the model.
    log : callable, optional
        Receives progress lines; None is silent.

    Returns
    -------
    model : `~specutils_cinn.model.CINNModel`
        The model with the weights of the best validation (or selection) loss.
    history : dict
        Steps, training, validation (and held-out) losses, timing and hardware.
    """
    say = log or (lambda _msg: None)
    device = resolve_device(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if isinstance(training_set, TrainingSet):
        src: _Source = _SetSource(training_set, config, device)
    else:
        src = _SimulatorSource(training_set, config, device)
    mean, std = src.mean, src.std
    arch = dict(architecture, n_params=len(src.parameters), npix=src.grid.npix)
    network = build_cinn(arch).to(device)
    ranges = {**src.ranges, **(parameter_ranges or {})}
    norm = _as_normalization(normalization or {"kind": "continuum"})

    def make_metadata(hist: dict[str, Any]) -> ModelMetadata:
        training = {"data": src.provenance, **src.info}
        if holdout is not None:
            training["holdout"] = {"data": holdout.provenance, "n": int(holdout.flux.shape[0])}
        if selection is not None:
            training["selection"] = {"data": selection.provenance,
                                     "n": int(selection.flux.shape[0]),
                                     "realisations": SELECTION_REALISATIONS}
        training.update({
            "config": asdict(config),
            "history": dict(hist),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "package_version": __version__,
            "torch_version": torch.__version__,
        })
        return ModelMetadata.from_dict(
            {
                "format_version": 1,
                "name": name,
                "version": version,
                "description": description,
                "parameters": [
                    {
                        "name": p,
                        "unit": parameter_unit(p).to_string(),
                        "range": [float(v) for v in ranges[p]],
                        "mean": float(mean[j]),
                        "std": float(std[j]),
                    }
                    for j, p in enumerate(src.parameters)
                ],
                "architecture": network.architecture,
                "wavelength_grid": src.grid.to_dict(),
                "resolving_power": src.resolving_power,
                "normalization": norm,
                "snr_range": list(config.snr_range),
                "training": training,
                "weights_sha256": None,
                "package_version": __version__,
            }
        )

    make_metadata({})  # fail now, not after hours of training, on bad metadata

    grid = src.grid
    pixel_width = torch.as_tensor(grid.pixel_width, dtype=torch.float32, device=device)
    seg_index = torch.cat(
        [
            torch.full((s.stop - s.start,), i, dtype=torch.long)
            for i, s in enumerate(grid.segment_slices)
        ]
    ).to(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed)

    def observed(flux: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noisy = augment_batch(flux, pixel_width, seg_index, config, generator)
        return encode_inputs(*renormalize_batch(*noisy, grid, norm))

    # Fixed noisy realisations of the validation (and held-out) spectra, to compare steps fairly;
    # simulated sets are encoded and evaluated in chunks to bound the memory.
    chunk = 4 * config.batch_size if isinstance(src, _SimulatorSource) else None

    def fixed(flux: torch.Tensor, z: torch.Tensor, seed: int
              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator(device=device)
        g.manual_seed(seed)
        step = chunk or max(1, flux.shape[0])
        return [(observed(flux[i:i + step], g), z[i:i + step])
                for i in range(0, flux.shape[0], step)]

    def loss_on(sets: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        total = sum(float(network.nll(z, x)) * z.shape[0] for x, z in sets)
        return total / sum(z.shape[0] for _, z in sets)

    val_sets = fixed(*src.validation(), config.seed + 1)
    hold_sets = None
    if holdout is not None:
        hold_sets = fixed(*_holdout_tensors(holdout, src, device), config.seed + 4)
    sel_sets = None
    if selection is not None:
        sel_flux, sel_z = _holdout_tensors(selection, src, device)
        sel_sets = fixed(sel_flux.repeat(SELECTION_REALISATIONS, 1),
                         sel_z.repeat(SELECTION_REALISATIONS, 1), config.seed + 5)

    opt = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config))
    history: dict[str, Any] = {"step": [], "train_loss": [], "val_loss": []}
    if hold_sets is not None:
        history["holdout_loss"] = []
    if sel_sets is not None:
        history["selection_loss"] = []
    best = (math.inf, copy.deepcopy(network.state_dict()), 0)
    running, t0 = 0.0, time.perf_counter()
    for step in range(config.steps):
        network.train()
        flux, target = src.batch(gen)
        inputs = observed(flux, gen)
        if config.label_noise > 0:
            target = target + config.label_noise * torch.randn(
                target.shape, generator=gen, device=device)
        loss = network.nll(target, inputs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        running += float(loss.detach())
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            network.eval()
            with torch.no_grad():
                val_loss = loss_on(val_sets)
                hold_loss = None if hold_sets is None else loss_on(hold_sets)
                sel_loss = None if sel_sets is None else loss_on(sel_sets)
            k = (step % config.eval_every) + 1
            history["step"].append(step + 1)
            history["train_loss"].append(running / k)
            history["val_loss"].append(val_loss)
            if hold_loss is not None:
                history["holdout_loss"].append(hold_loss)
            if sel_loss is not None:
                history["selection_loss"].append(sel_loss)
            running = 0.0
            pick = val_loss if sel_loss is None else sel_loss
            if pick < best[0]:
                best = (pick, copy.deepcopy(network.state_dict()), step + 1)
            extra = "" if sel_loss is None else f"  selection {sel_loss:8.3f}"
            extra += "" if hold_loss is None else f"  holdout {hold_loss:8.3f}"
            say(
                f"step {step + 1:6d}/{config.steps}  train {history['train_loss'][-1]:8.3f}  "
                f"val {val_loss:8.3f}{extra}  {time.perf_counter() - t0:7.0f} s"
            )
    network.load_state_dict(best[1])
    network.eval()
    history.update(
        best_step=best[2],
        best_val_loss=(history["val_loss"][history["step"].index(best[2])] if best[2]
                       else math.inf),  # no finite loss at any evaluation
        selected_by="validation" if sel_sets is None else "selection",
        seconds=time.perf_counter() - t0,
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        threads=torch.get_num_threads(),
    )
    metadata = make_metadata(history)
    return CINNModel(metadata=metadata, network=network.cpu()), history


def train_from_config(
    path: str | Path, output: str | Path | None = None, log: Callable[[str], None] | None = print
) -> Path:
    """Train a model from a TOML configuration file and write the model directory.

    The file has the tables ``[model]`` (``name``, ``version``, ``description``,
    ``output``, optional ``[model.normalization]``), either ``[data]`` (``path`` of a
    training-set ``.npz``, relative to the config file; ``parameters``; optional
    ``[data.ranges]``) or ``[simulator]`` (fresh spectra from an emulator every step; see
    `specutils_cinn.simulation.EmulatorSimulator.from_config`; its optional ``holdout`` is the
    path of a training-set ``.npz`` on the model grid whose loss is recorded), ``[architecture]``
    (see `specutils_cinn.flows.build_cinn`) and ``[training]`` (`TrainingConfig` fields).

    Parameters
    ----------
    path : path-like
        The TOML configuration.
    output : path-like, optional
        Model directory to write; default ``[model] output`` relative to the config file.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    pathlib.Path
        The model directory.
    """
    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    if "model" not in cfg:
        raise ValueError(f"{path}: missing [model] table")
    if "data" not in cfg and "simulator" not in cfg:
        raise ValueError(f"{path}: missing [data] table (or [simulator])")
    if "data" in cfg and "simulator" in cfg:
        raise ValueError(f"{path}: give either [data] or [simulator], not both")
    for section in ("architecture", "training"):
        if section not in cfg:
            raise ValueError(f"{path}: missing [{section}] table")
    base = path.parent
    config = TrainingConfig.from_dict(cfg["training"])
    holdout = selection = None
    ranges = None
    if "data" in cfg:
        data = cfg["data"]
        source: Any = load_training_set(base / data["path"], data.get("parameters"))
        ranges = data.get("ranges")
    else:
        from .simulation import EmulatorSimulator

        table = cfg["simulator"]
        source = EmulatorSimulator.from_config(table, base)
        if "holdout" in table:
            holdout = load_training_set(base / table["holdout"], source.parameters)
        if "selection" in table:
            selection = load_training_set(base / table["selection"], source.parameters)
    model, _history = train_model(
        source,
        cfg["architecture"],
        config,
        name=cfg["model"]["name"],
        version=cfg["model"]["version"],
        description=cfg["model"].get("description", ""),
        normalization=cfg["model"].get("normalization"),
        parameter_ranges=ranges,
        holdout=holdout,
        selection=selection,
        log=log,
    )
    out = Path(output) if output is not None else base / cfg["model"]["output"]
    model.save(out)
    return out
