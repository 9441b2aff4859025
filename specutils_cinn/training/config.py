"""Training settings and the TOML file that describes a training run.

`TrainingConfig` holds the optimization and augmentation settings (the ``[training]`` table).
`read_training_file` reads and checks a whole configuration file, the one schema that
`specutils_cinn.training.train_from_config` and ``specutils-cinn train`` accept:

``[model]``
    ``name``, ``version``, ``description``, ``output`` (model directory, relative to the file),
    an optional ``[model.normalization]`` table and an optional ``pixel_mask``: an ECSV file of
    poorly modeled pixels (`~specutils_cinn.inputs.PixelMask`, relative to the file), masked
    in every training spectrum and stored in the model.
``[data]`` *or* ``[simulator]``
    A training set (``path`` of a ``.npz``, relative to the file; ``parameters``; optional
    ``[data.ranges]``) or fresh emulated spectra every step (`SIMULATOR_KEYS`, read by
    `specutils_cinn.training.EmulatorSimulator.from_config`; ``holdout`` and ``selection``
    name training-set files on the model grid).
``[architecture]``
    The network (see `specutils_cinn.flows.build_cinn`).
``[training]``
    `TrainingConfig` fields.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["SIMULATOR_KEYS", "TrainingConfig", "TrainingFile", "read_training_file"]

#: Keys of the ``[simulator]`` table of a training configuration.
SIMULATOR_KEYS = ("emulator", "parameters", "vsini_range", "vmacro_range", "rv_sigma",
                  "emulator_noise", "emulator_error", "limb_darkening", "oversample", "segments",
                  "wavelength_range", "ranges", "kiel_region", "holdout", "selection",
                  "provenance")


@dataclass
class TrainingConfig:
    """Optimization and augmentation settings.

    Attributes
    ----------
    steps : int
        Optimization steps (batches).
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
        Standard deviation of Gaussian jitter added to the standardized labels every step; a
        little (e.g. 0.03) regularizes the density of small training sets, at the cost of
        slightly wider posteriors.
    photon_noise : bool
        If True the noise scales as the square root of the flux (photon noise; the reported
        uncertainty is computed from the *noisy* flux, as a pipeline would, so it carries no
        information about the noise-free spectrum); if False it is constant per spectrum.
        Both follow `specutils_cinn.instruments.draw_noise`.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    threads : int or None
        CPU threads for torch (None keeps torch's default).
    checkpoint_every : int or None
        Steps between training checkpoints when the run is given a checkpoint path (a
        multiple of ``eval_every``; None: at every evaluation). See
        `specutils_cinn.checkpoint`.
    prefetch : bool
        Draw the next step's batch (simulated spectra, noise, masks) on a second thread while
        the network trains on the current one (`specutils_cinn.training.batches.BatchStream`).
        The weights are the same either way; on a CPU it pays where a core is free for the
        second thread (``python benchmarks/bench_training_step.py``).
    segment_dropout : float
        Probability that a training spectrum loses one whole grid segment (a 4MOST arm,
        chosen uniformly), as when a spectrograph arm is missing or unusable; the network then
        learns to read the others alone. 0 draws nothing (and no random numbers).
    range_dropout : float
        Probability that a training spectrum keeps only one contiguous part of the model's
        wavelength range (all segments together), as for a spectrum from an instrument that
        covers less (the UVES Sun reaches a third of the 4MOST LR range); the rest is made
        invalid. Where ``segment_dropout`` cannot help (a one-segment grid such as 4MOST LR).
        0 (default) draws nothing, and the setting is not recorded.
    range_keep : tuple of float
        ``(low, high)``, ``0 < low <= high <= 1``: the fraction of the grid's pixels the kept
        part spans, drawn uniformly in it; its position is uniform too.
    init_weights : str or None
        A model directory (relative to the configuration file) whose weights start the
        training instead of a random initialization: same parameters, standardization and
        wavelength grid; every one of its tensors must exist in the new network with the same
        shape, and tensors it lacks (e.g. a new line-window branch) keep their initialization.
        Its name, version and weights SHA-256 are recorded in the new model's metadata.
    feature_regression : float
        Weight of an auxiliary loss that makes the conditioning features carry every label
        linearly: a linear head (trained with the network, not saved in the model) regresses
        the standardized labels on the features, and its mean squared error times this weight
        is added to the negative log-likelihood. The flow alone may leave a weak label out of
        the features for good (``scripts/feature_probe.py``: [Mn/Fe] and [Ni/Fe] in the v2
        models); the head gives the conditioner a direct gradient for each label. 0 (default):
        the plain likelihood, and the setting is not recorded.
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
    checkpoint_every: int | None = None
    prefetch: bool = False
    segment_dropout: float = 0.0
    init_weights: str | None = None
    feature_regression: float = 0.0
    range_dropout: float = 0.0
    range_keep: tuple[float, float] = (0.25, 0.75)

    def __post_init__(self) -> None:
        self.snr_range = tuple(float(s) for s in self.snr_range)  # type: ignore[assignment]
        if len(self.snr_range) != 2 or not 0 < self.snr_range[0] <= self.snr_range[1]:
            raise ValueError(f"snr_range must be (lo, hi) with 0 < lo <= hi, got {self.snr_range}")
        if min(self.steps, self.batch_size, self.eval_every, self.validation_size) < 1:
            raise ValueError("steps, batch_size, eval_every and validation_size must be positive")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in (0, 1)")
        if not (math.isfinite(self.feature_regression) and self.feature_regression >= 0.0):
            raise ValueError(f"feature_regression must be a finite non-negative weight, got "
                             f"{self.feature_regression}")
        if not 0.0 <= self.segment_dropout <= 1.0:
            raise ValueError(f"segment_dropout must be in [0, 1], got {self.segment_dropout}")
        if not 0.0 <= self.range_dropout <= 1.0:
            raise ValueError(f"range_dropout must be in [0, 1], got {self.range_dropout}")
        try:
            keep = tuple(float(k) for k in self.range_keep)
        except (TypeError, ValueError):
            keep = ()
        if len(keep) != 2 or not 0.0 < keep[0] <= keep[1] <= 1.0:
            raise ValueError(f"range_keep must be (low, high) with 0 < low <= high <= 1, got "
                             f"{self.range_keep!r}")
        self.range_keep = keep  # type: ignore[assignment]
        if self.init_weights is not None and not isinstance(self.init_weights, str):
            raise ValueError(f"init_weights must be a path, got {self.init_weights!r}")
        if not isinstance(self.prefetch, bool):
            raise ValueError(f"prefetch must be true or false, got {self.prefetch!r}")
        if self.checkpoint_every is not None and (
                self.checkpoint_every < 1 or self.checkpoint_every % self.eval_every):
            raise ValueError(f"checkpoint_every must be a positive multiple of eval_every "
                             f"({self.eval_every}), got {self.checkpoint_every}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        """Build from a dict, rejecting unknown keys.

        Parameters
        ----------
        d : dict
            Field names and values (the ``[training]`` table).

        Returns
        -------
        TrainingConfig

        Raises
        ------
        ValueError
            On an unknown key or a bad value.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown training option(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**d)


@dataclass(frozen=True)
class TrainingFile:
    """A checked training configuration file (see the module docstring for its tables).

    Attributes
    ----------
    path : pathlib.Path
        The file.
    model : dict
        The ``[model]`` table.
    data : dict or None
        The ``[data]`` table (None when the file has ``[simulator]``).
    simulator : dict or None
        The ``[simulator]`` table (None when the file has ``[data]``).
    architecture : dict
        The ``[architecture]`` table.
    training : TrainingConfig
        The ``[training]`` table.
    """

    path: Path
    model: dict[str, Any]
    data: dict[str, Any] | None
    simulator: dict[str, Any] | None
    architecture: dict[str, Any]
    training: TrainingConfig

    @property
    def base(self) -> Path:
        """Directory that relative paths in the file start from."""
        return self.path.parent


def read_training_file(path: str | Path) -> TrainingFile:
    """Read and check a training configuration file.

    Parameters
    ----------
    path : path-like
        The TOML file.

    Returns
    -------
    TrainingFile

    Raises
    ------
    ValueError
        If the file is not TOML, lacks a table, has both ``[data]`` and ``[simulator]``, has
        an unknown ``[training]`` or ``[simulator]`` key, or a ``[model] pixel_mask`` that is
        not a string.
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
    mask = cfg["model"].get("pixel_mask")
    if mask is not None and not isinstance(mask, str):
        raise ValueError(f"{path}: [model] pixel_mask must be a file name, got {mask!r}")
    simulator = cfg.get("simulator")
    if simulator is not None:
        unknown = sorted(set(simulator) - set(SIMULATOR_KEYS))
        if unknown:
            raise ValueError(f"unknown [simulator] option(s) {unknown}; known: "
                             f"{sorted(SIMULATOR_KEYS)}")
    return TrainingFile(
        path=path,
        model=cfg["model"],
        data=cfg.get("data"),
        simulator=simulator,
        architecture=cfg["architecture"],
        training=TrainingConfig.from_dict(cfg["training"]),
    )
