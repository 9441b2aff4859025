"""Training a cINN by maximum likelihood on noise-free spectra with fresh noise every step.

`train_model` trains on a fixed `~specutils_cinn.training.TrainingSet` or on a simulator that
draws fresh noise-free spectra every step (e.g. `specutils_cinn.training.EmulatorSimulator`;
validation then uses a fixed, seeded simulated set, and a held-out set of real synthetic
spectra can be monitored alongside). Every step the batch is made observed-like by
`specutils_cinn.training.augment_batch` (fresh S/N, noise, masks, gaps, continuum errors, the
model's mask of poorly modeled pixels) and
`specutils_cinn.training.renormalize_batch`, so one model serves spectra of any quality in
the training range. `train_from_config` runs a training described by a TOML file
(`specutils_cinn.training.read_training_file`).

The pieces of `train_model`: a data source (`_SetSource`, `_SimulatorSource`), the
observation model applied to every batch and to the fixed evaluation sets (`_Observation`),
the metadata written with the weights (`_model_metadata`) and the optimization loop.
"""

from __future__ import annotations

import copy
import datetime
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..checkpoint import (
    CheckpointError,
    TrainingCheckpoint,
    array_digest,
    read_checkpoint,
    run_fingerprint,
    write_checkpoint,
)
from ..devices import resolve_device, restore_torch_threads
from ..flows import build_cinn
from ..flows.conditioning import encode_inputs
from ..inputs.normalization import Normalization
from ..inputs.pixel_mask import PixelMask
from ..model import CINNModel, ModelMetadata
from ..parameters import parameter_unit
from ..wavelength_grid import WavelengthGrid
from .augmentation import augment_batch, renormalize_batch
from .batches import BatchStream
from .config import TrainingConfig, read_training_file
from .data import TrainingSet, load_training_set
from .simulation import EmulatorSimulator

__all__ = ["SELECTION_REALISATIONS", "SELECTION_REALIZATIONS", "train_from_config", "train_model"]

#: Fixed noisy realizations per spectrum of a ``selection`` set (see `train_model`).
SELECTION_REALIZATIONS = 8
#: The former, British spelling of `SELECTION_REALIZATIONS`; goes away in the next release.
SELECTION_REALISATIONS = SELECTION_REALIZATIONS

#: Noise-free flux and standardized labels of a fixed evaluation set, encoded in chunks.
_EvalSets = list[tuple[torch.Tensor, torch.Tensor]]


# --------------------------------------------------------------------------------------------
# where the spectra come from
# --------------------------------------------------------------------------------------------
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

    def standardize(self, labels: Any, device: torch.device) -> torch.Tensor:
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
        self._arrays = (ts.flux, ts.labels, ts.groups)
        self._flux = torch.as_tensor(ts.flux, dtype=torch.float32, device=device)
        self._z = self.standardize(ts.labels, device)
        self._val = torch.as_tensor(val_idx, device=device)
        self._train = torch.as_tensor(train_idx, device=device)
        self._batch = config.batch_size

    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._flux[self._val], self._z[self._val]

    def data_digest(self) -> str:
        """SHA-256 of the training set's flux, labels and groups."""
        return array_digest(*self._arrays)

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
                                "specutils_cinn.training.SpectrumSimulator)")
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
        self._val = (flux, self.standardize(labels, device))
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
        return flux.to(torch.float32), self.standardize(labels, self._device)


def _holdout_tensors(
    holdout: TrainingSet, source: _Source, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise-free flux and standardized labels of a held-out set, in the model's order."""
    if holdout.grid != source.grid:
        raise ValueError("the held-out set must be on the model grid "
                         f"({source.grid.to_dict()}), got {holdout.grid.to_dict()}")
    missing = [p for p in source.parameters if p not in holdout.parameters]
    if missing:
        raise ValueError(f"the held-out set has no labels {missing}")
    cols = [holdout.parameters.index(p) for p in source.parameters]
    return (torch.as_tensor(holdout.flux, dtype=torch.float32, device=device),
            source.standardize(holdout.labels[:, cols], device))




# --------------------------------------------------------------------------------------------
# the observation model and the evaluation sets
# --------------------------------------------------------------------------------------------
class _Observation:
    """Noise-free flux to network inputs: `augment_batch`, `renormalize_batch`, encoding."""

    def __init__(self, grid: WavelengthGrid, config: TrainingConfig,
                 normalization: Normalization, device: torch.device, chunk: int | None,
                 pixel_mask: PixelMask | None = None) -> None:
        self.grid, self.config, self.normalization = grid, config, normalization
        self.device, self.chunk = device, chunk
        self.masked = (None if pixel_mask is None
                       else torch.as_tensor(pixel_mask.on_grid(grid), device=device))
        self.pixel_width = torch.as_tensor(grid.pixel_width, dtype=torch.float32, device=device)
        self.segment_index = torch.as_tensor(grid.segment_index, device=device)

    def __call__(self, flux: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Encoded network inputs of one fresh noisy realization of ``flux``."""
        noisy = augment_batch(flux, self.pixel_width, self.segment_index, self.config, generator,
                              self.masked)
        return encode_inputs(*renormalize_batch(*noisy, self.grid, self.normalization))

    def fixed(self, flux: torch.Tensor, z: torch.Tensor, seed: int) -> _EvalSets:
        """One noisy realization of ``flux`` drawn from ``seed`` (to compare steps fairly),
        with its labels ``z``, in chunks of ``chunk`` spectra (all at once if None)."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        step = self.chunk or max(1, flux.shape[0])
        return [(self(flux[i:i + step], g), z[i:i + step])
                for i in range(0, flux.shape[0], step)]


def _mean_loss(network: torch.nn.Module, sets: _EvalSets) -> float:
    """Negative log-likelihood per spectrum over evaluation sets."""
    total = sum(float(network.nll(z, x)) * z.shape[0] for x, z in sets)
    return total / sum(z.shape[0] for _, z in sets)


# --------------------------------------------------------------------------------------------
# the metadata written with the weights
# --------------------------------------------------------------------------------------------
def _model_metadata(
    src: _Source, network: Any, config: TrainingConfig, history: dict[str, Any], *,
    name: str, version: str, description: str, normalization: Normalization,
    ranges: dict[str, Sequence[float]], holdout: TrainingSet | None,
    selection: TrainingSet | None, pixel_mask: PixelMask | None = None,
    initialized_from: dict[str, Any] | None = None,
) -> ModelMetadata:
    """The model's metadata after ``history`` (checked by `ModelMetadata.from_dict`)."""
    training = {"data": src.provenance, **src.info}
    if initialized_from is not None:
        training["initialized_from"] = dict(initialized_from)
    if holdout is not None:
        training["holdout"] = {"data": holdout.provenance, "n": int(holdout.flux.shape[0])}
    if selection is not None:
        training["selection"] = {"data": selection.provenance,
                                 "n": int(selection.flux.shape[0]),
                                 "realizations": SELECTION_REALIZATIONS}
    training.update({
        # the settings that decide the result (not where a checkpoint goes, nor prefetching)
        "config": _recorded_settings(config, ("checkpoint_every", "prefetch")),
        "history": dict(history),
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
                    "mean": float(src.mean[j]),
                    "std": float(src.std[j]),
                }
                for j, p in enumerate(src.parameters)
            ],
            "architecture": network.architecture,
            "wavelength_grid": src.grid.to_dict(),
            "resolving_power": src.resolving_power,
            "normalization": normalization,
            "snr_range": list(config.snr_range),
            "training": training,
            "weights_sha256": None,
            "package_version": __version__,
            **({} if pixel_mask is None else {"pixel_mask": pixel_mask.to_dict()}),
        }
    )


# --------------------------------------------------------------------------------------------
# the optimization
# --------------------------------------------------------------------------------------------
def resolve_line_windows(architecture: Mapping[str, Any], grid: WavelengthGrid
                         ) -> dict[str, Any]:
    """Turn a configuration's line windows into the conditioner's pixel indices on a grid.

    A training configuration names the windows of the line-window branch
    (`~specutils_cinn.flows.SpectrumConditioner`) by wavelength: ``[architecture.conditioner]
    lines`` (centers in Angstrom, the grid's medium) and ``line_half_width`` (Angstrom,
    default 0.4). The network needs pixel indices (``line_pixels``): those of ``grid`` within
    a half-width of any center (`~specutils_cinn.wavelength_grid.WavelengthGrid.pixels_within`).

    Parameters
    ----------
    architecture : mapping
        The ``[architecture]`` table (with ``conditioner``).
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        The model grid.

    Returns
    -------
    dict
        A copy of ``architecture``; with ``lines`` its conditioner has ``line_pixels``
        instead of ``lines`` and ``line_half_width``.

    Raises
    ------
    ValueError
        If ``line_half_width`` comes without ``lines``, or no pixel lies in the windows.
    """
    arch = dict(architecture)
    cond = dict(arch.get("conditioner") or {})
    if "lines" not in cond:
        if "line_half_width" in cond:
            raise ValueError("architecture.conditioner: line_half_width needs lines")
        return arch
    centers = cond.pop("lines")
    pixels = grid.pixels_within(centers, float(cond.pop("line_half_width", 0.4)))
    if pixels.size == 0:
        raise ValueError("architecture.conditioner: no pixel of the model grid lies in the "
                         "line windows")
    cond["line_pixels"] = pixels.tolist()
    return dict(arch, conditioner=cond)


def _initialize_from(network: torch.nn.Module, initial: CINNModel, src: _Source
                     ) -> dict[str, Any]:
    """Copy ``initial``'s weights into ``network`` (see ``TrainingConfig.init_weights``)."""
    meta = initial.metadata
    what = f"init_weights ({meta.name} {meta.version})"
    if list(meta.parameter_names) != list(src.parameters):
        raise ValueError(f"{what} has the parameters {meta.parameter_names}, this run "
                         f"{src.parameters}")
    if meta.grid.to_dict() != src.grid.to_dict():
        raise ValueError(f"{what} is on another wavelength grid than this run")
    if not (np.allclose(meta.label_mean, src.mean, rtol=1e-9, atol=1e-12)
            and np.allclose(meta.label_std, src.std, rtol=1e-9, atol=1e-12)):
        raise ValueError(f"{what} standardizes the labels differently from this run (another "
                         "prior or seed): its weights would mean other labels")
    old = initial.network.state_dict()
    new = network.state_dict()
    for k, v in old.items():
        if k not in new or new[k].shape != v.shape:
            raise ValueError(f"{what}: its tensor {k} {tuple(v.shape)} has no counterpart of "
                             "that shape in this run's network")
    network.load_state_dict(old, strict=False)
    return {"name": meta.name, "version": meta.version, "weights_sha256": initial.sha256,
            "new_tensors": sorted(k for k in new if k not in old)}


def _lr_factor(step: int, config: TrainingConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _draw_batch(src: _Source, observe: _Observation, config: TrainingConfig,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """All the randomness of one step: a fresh observed batch and its (jittered) labels."""
    flux, target = src.batch(generator)
    inputs = observe(flux, generator)
    if config.label_noise > 0:
        target = target + config.label_noise * torch.randn(
            target.shape, generator=generator, device=target.device)
    return inputs, target


#: Prefix of the feature-regression head's tensors in a checkpoint's ``network`` state.
_HEAD_PREFIX = "feature_regression_head."


def _optimization_step(network: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
                       batch: tuple[torch.Tensor, torch.Tensor], config: TrainingConfig,
                       head: torch.nn.Module | None = None) -> float:
    """One step on a batch of `_draw_batch`; its negative log-likelihood.

    With ``head`` (``config.feature_regression > 0``) the loss minimized also has the head's
    mean squared error on the standardized labels from the conditioning features, times the
    weight; the value returned is the likelihood part alone, comparable between runs.
    """
    network.train()
    inputs, target = batch
    params = list(network.parameters())
    if head is None:
        loss = nll = network.nll(target, inputs)
    else:
        features = network.condition(inputs)  # once, for the flow and the head
        nll = network.nll(target, features=features)
        loss = nll + config.feature_regression * ((head(features) - target) ** 2).mean()
        params += list(head.parameters())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    optimizer.step()
    scheduler.step()
    return float(nll.detach())


def _recorded_settings(config: TrainingConfig, leave_out: tuple[str, ...]) -> dict[str, Any]:
    """The configuration's settings as recorded, without ``leave_out`` and without settings
    added later that are at their neutral default (so that earlier runs keep their record)."""
    out = {k: v for k, v in asdict(config).items() if k not in leave_out}
    if not out.get("feature_regression"):
        out.pop("feature_regression", None)
    if not out.get("range_dropout"):
        out.pop("range_dropout", None)
        out.pop("range_keep", None)
    return out


@restore_torch_threads
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
    pixel_mask: PixelMask | None = None,
    log: Callable[[str], None] | None = print,
    checkpoint: str | Path | None = None,
    initial: CINNModel | None = None,
) -> tuple[CINNModel, dict[str, Any]]:
    """Train a cINN on a training set or a simulator and return the model and its history.

    Parameters
    ----------
    training_set : TrainingSet or simulator
        Noise-free spectra and labels, or a simulator (duck-typed, see
        `specutils_cinn.training.SpectrumSimulator`: ``parameters``, ``grid``,
        ``resolving_power``, ``provenance`` and ``sample(n, generator) -> (flux, labels)``)
        that draws fresh noise-free spectra for every step. With a simulator the label
        standardization comes from a large prior draw (``sample_labels`` if it has one), the
        validation set is ``config.validation_size`` simulated spectra drawn once (seed
        ``config.seed + 2``), and the training ranges are its ``parameter_ranges``.
    architecture : dict
        Network architecture (see `specutils_cinn.flows.build_cinn`); ``n_params`` and
        ``npix`` are filled in from the training data.
    config : TrainingConfig
        Optimization and augmentation settings.
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
        stars no emulator was trained on) whose loss, on one fixed noisy realization, is
        recorded in the history as ``holdout_loss`` (not used to pick the weights).
    selection : TrainingSet, optional
        Noise-free spectra on the model grid that pick the weights instead of the validation
        set: the weights kept are those of the lowest loss on `SELECTION_REALIZATIONS` fixed
        noisy realizations of each spectrum (``selection_loss`` in the history). Meant for
        training on emulated spectra: synthetic spectra the emulator was not fitted to stop the
        network where it starts learning the emulator's own errors. Must not overlap the
        stars used to validate the model.
    pixel_mask : `~specutils_cinn.inputs.PixelMask`, optional
        Poorly modeled pixels: invalid in every training, validation, held-out and selection
        spectrum (`augment_batch`), as the estimator treats them, and stored in the model's
        metadata (``pixel_mask``), which makes the estimator apply it.
    log : callable, optional
        Receives progress lines; None is silent.
    checkpoint : path-like, optional
        A training checkpoint (`specutils_cinn.checkpoint`), written at the
        evaluation steps (every ``config.checkpoint_every`` steps). If the file exists, the run
        continues from it and ends with the weights an uninterrupted run would have on the
        same device; a checkpoint of another run (other settings, data or architecture), or
        of a run on another kind of device (its random generators are that device's), is
        refused with a `~specutils_cinn.checkpoint.CheckpointError`.
    initial : `~specutils_cinn.model.CINNModel`, optional
        Start from this model's weights instead of a random initialization (see
        `TrainingConfig` ``init_weights``): same parameters, label standardization and grid;
        each of its tensors must fit the new network, whose other tensors keep their
        initialization. Recorded in the metadata as ``training["initialized_from"]``.

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
    arch = resolve_line_windows(
        dict(architecture, n_params=len(src.parameters), npix=src.grid.npix), src.grid)
    network = build_cinn(arch).to(device)
    initialized_from = None if initial is None else _initialize_from(network, initial, src)
    norm = (normalization if isinstance(normalization, Normalization)
            else Normalization.from_dict(normalization or {"kind": "continuum"}))
    meta = dict(name=name, version=version, description=description, normalization=norm,
                ranges={**src.ranges, **(parameter_ranges or {})}, holdout=holdout,
                selection=selection, pixel_mask=pixel_mask, initialized_from=initialized_from)
    if initialized_from is not None:
        say(f"weights from {initial.metadata.name} {initial.metadata.version}; new tensors: "
            f"{', '.join(initialized_from['new_tensors']) or 'none'}")
    _model_metadata(src, network, config, {}, **meta)  # fail now, not after hours of training

    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed)
    # Fixed noisy realizations of the validation (and held-out) spectra, to compare steps
    # fairly; simulated sets are encoded and evaluated in chunks to bound the memory.
    observe = _Observation(src.grid, config, norm, device,
                           4 * config.batch_size if isinstance(src, _SimulatorSource) else None,
                           pixel_mask)
    sets = {"val": observe.fixed(*src.validation(), config.seed + 1)}
    if holdout is not None:
        sets["holdout"] = observe.fixed(*_holdout_tensors(holdout, src, device), config.seed + 4)
    if selection is not None:
        sel_flux, sel_z = _holdout_tensors(selection, src, device)
        sets["selection"] = observe.fixed(sel_flux.repeat(SELECTION_REALIZATIONS, 1),
                                          sel_z.repeat(SELECTION_REALIZATIONS, 1),
                                          config.seed + 5)
    pick = "selection" if "selection" in sets else "val"
    cond = network.conditioner
    if getattr(cond, "line_standardize", False) and (
            initialized_from is None
            or "conditioner.line_center" in initialized_from["new_tensors"]):
        # the line branch's input standardization, from the fixed validation spectra
        inputs = torch.cat([x for x, _ in sets["val"]])[:4096]
        cond.set_line_standardization(inputs)

    head = None
    if config.feature_regression > 0:  # drawn from the seeded generator after the network
        head = torch.nn.Linear(network.conditioner.features, len(src.parameters)).to(device)
    opt = torch.optim.AdamW(
        list(network.parameters()) + ([] if head is None else list(head.parameters())),
        lr=config.learning_rate, weight_decay=config.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config))
    history: dict[str, Any] = {"step": [], "train_loss": [],
                               **{f"{k}_loss": [] for k in sets}}
    best = (math.inf, copy.deepcopy(network.state_dict()), 0)
    start, done_before = 0, 0.0
    fingerprint = _fingerprint(src, arch, config, meta, sets)
    if checkpoint is not None and Path(checkpoint).exists():
        state = read_checkpoint(checkpoint)
        written_on = state.extra.get("device")
        if written_on is not None and written_on != device.type:
            raise CheckpointError(
                f"{checkpoint} was written by a run on {written_on}; this run is on "
                f"{device.type}. Its random generators belong to that kind of device: continue "
                f"there (device = {written_on!r}), or start afresh with another checkpoint path")
        state = read_checkpoint(checkpoint, fingerprint)
        saved = dict(state.network)
        head_state = {k[len(_HEAD_PREFIX):]: saved.pop(k) for k in list(saved)
                      if k.startswith(_HEAD_PREFIX)}
        network.load_state_dict(saved)
        if head is not None:
            head.load_state_dict(head_state)
        opt.load_state_dict(state.optimizer)
        sched.load_state_dict(state.scheduler)
        gen.set_state(state.generator_state)
        torch.set_rng_state(state.global_state)
        history, start, done_before = state.history, state.step, state.seconds
        best = (state.best_loss, state.best, state.best_step)
        say(f"resuming from {checkpoint} at step {start}/{config.steps}")
    every = config.checkpoint_every or config.eval_every
    running, t0 = 0.0, time.perf_counter() - done_before
    with BatchStream(lambda g: _draw_batch(src, observe, config, g), gen,
                     config.steps - start, config.prefetch) as batches:
        for step in range(start, config.steps):
            running += _optimization_step(network, opt, sched, next(batches), config, head)
            if (step + 1) % config.eval_every != 0 and step + 1 != config.steps:
                continue
            network.eval()
            with torch.no_grad():
                losses = {k: _mean_loss(network, v) for k, v in sets.items()}
            history["step"].append(step + 1)
            history["train_loss"].append(running / ((step % config.eval_every) + 1))
            for k, v in losses.items():
                history[f"{k}_loss"].append(v)
            running = 0.0
            if losses[pick] < best[0]:
                best = (losses[pick], copy.deepcopy(network.state_dict()), step + 1)
            if checkpoint is not None and ((step + 1) % every == 0 or step + 1 == config.steps):
                write_checkpoint(checkpoint, TrainingCheckpoint(
                    step=step + 1, fingerprint=fingerprint, network={
                        **network.state_dict(),
                        **({} if head is None else {_HEAD_PREFIX + k: v
                                                    for k, v in head.state_dict().items()})},
                    best=best[1], best_loss=best[0], best_step=best[2],
                    optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                    generator_state=batches.generator_state(),
                    global_state=torch.get_rng_state(), history=history,
                    seconds=time.perf_counter() - t0, extra={"device": device.type}))
            extra = "".join(f"  {k} {losses[k]:8.3f}"
                            for k in ("selection", "holdout") if k in sets)
            say(
                f"step {step + 1:6d}/{config.steps}  train {history['train_loss'][-1]:8.3f}  "
                f"val {losses['val']:8.3f}{extra}  {time.perf_counter() - t0:7.0f} s"
            )
    network.load_state_dict(best[1])
    network.eval()
    history.update(
        best_step=best[2],
        best_val_loss=(history["val_loss"][history["step"].index(best[2])] if best[2]
                       else math.inf),  # no finite loss at any evaluation
        selected_by="validation" if pick == "val" else "selection",
        seconds=time.perf_counter() - t0,
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        threads=torch.get_num_threads(),
        prefetch=config.prefetch,
    )
    metadata = _model_metadata(src, network, config, history, **meta)
    return CINNModel(metadata=metadata, network=network.cpu()), history


def _fingerprint(src: Any, arch: Mapping[str, Any], config: TrainingConfig,
                 meta: Mapping[str, Any], sets: Mapping[str, Any]) -> str:
    """`run_fingerprint` of a run: everything that decides its result, not where it runs."""
    settings = _recorded_settings(config, ("device", "threads", "checkpoint_every", "prefetch"))
    if isinstance(src, _SetSource):
        data: Any = src.data_digest()
    else:
        data = {"provenance": getattr(src.sim, "provenance", None),
                "simulator": type(src.sim).__name__}
    return run_fingerprint({
        "settings": settings, "architecture": dict(arch), "parameters": list(src.parameters),
        "grid": src.grid.to_dict(), "data": data,
        "name": meta["name"], "version": meta["version"],
        "normalization": meta["normalization"].to_dict(),
        "ranges": {k: list(map(float, v)) for k, v in meta["ranges"].items()},
        "pixel_mask": None if meta["pixel_mask"] is None else meta["pixel_mask"].to_dict(),
        "initialized_from": meta.get("initialized_from"),
        "sets": {k: array_digest(*(t.detach().cpu().numpy() for f, z in v for t in (f, z)))
                 for k, v in sets.items()},
    })


def train_from_config(
    path: str | Path, output: str | Path | None = None, log: Callable[[str], None] | None = print,
    checkpoint: str | Path | None = None,
) -> Path:
    """Train a model from a TOML configuration file and write the model directory.

    The file's tables are those of `specutils_cinn.training.read_training_file`: ``[model]``,
    ``[data]`` (a training-set ``.npz``) or ``[simulator]`` (fresh spectra from an emulator
    every step, `specutils_cinn.training.EmulatorSimulator.from_config`; its optional
    ``holdout`` and ``selection`` are training-set ``.npz`` files on the model grid, see
    `train_model`), ``[architecture]`` and ``[training]``. ``[model] pixel_mask`` names a
    mask of poorly modeled pixels (an ECSV file of `~specutils_cinn.inputs.PixelMask`,
    relative to the configuration file), applied in training and stored in the model.

    Parameters
    ----------
    path : path-like
        The TOML configuration.
    output : path-like, optional
        Model directory to write; default ``[model] output`` relative to the config file.
    log : callable, optional
        Receives progress lines.
    checkpoint : path-like, optional
        Training checkpoint to write and, if it exists, to continue from (see `train_model`).

    Returns
    -------
    pathlib.Path
        The model directory.
    """
    cfg = read_training_file(path)
    base = cfg.base
    holdout = selection = None
    ranges = None
    if cfg.data is not None:
        source: Any = load_training_set(base / cfg.data["path"], cfg.data.get("parameters"))
        ranges = cfg.data.get("ranges")
    else:
        table = cfg.simulator or {}
        source = EmulatorSimulator.from_config(table, base)
        if "holdout" in table:
            holdout = load_training_set(base / table["holdout"], source.parameters)
        if "selection" in table:
            selection = load_training_set(base / table["selection"], source.parameters)
    mask_path = cfg.model.get("pixel_mask")
    pixel_mask = None if mask_path is None else PixelMask.read(base / mask_path)
    initial = (None if cfg.training.init_weights is None
               else CINNModel.load(base / cfg.training.init_weights))
    model, _history = train_model(
        source,
        cfg.architecture,
        cfg.training,
        name=cfg.model["name"],
        version=cfg.model["version"],
        description=cfg.model.get("description", ""),
        normalization=cfg.model.get("normalization"),
        parameter_ranges=ranges,
        holdout=holdout,
        selection=selection,
        pixel_mask=pixel_mask,
        log=log,
        checkpoint=checkpoint,
        initial=initial,
    )
    out = Path(output) if output is not None else base / cfg.model["output"]
    model.save(out)
    return out
