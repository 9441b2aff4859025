"""Training a cINN: training sets, the observation model, the optimization and the simulator.

The modules follow the pipeline:

- ``training.config``: `TrainingConfig` and the TOML file of a training run
  (`read_training_file`);
- ``training.data``: `TrainingSet`, noise-free spectra with their labels, and
  its ``.npz`` files;
- ``training.prior``: `LabelPrior`, the prior of the simulated spectra's labels;
- ``training.simulation``: `EmulatorSimulator`, fresh noise-free spectra from a
  spectrum emulator every step, and the `SpectrumSimulator` protocol;
- ``training.augmentation``: fresh noise (the package's one noise model,
  `specutils_cinn.instruments.draw_noise`), masks, gaps and continuum errors every step
  (`augment_batch`), and the model's input normalization (`renormalize_batch`);
- ``training.batches``: `BatchStream`, each step's batch drawn in order, optionally one step
  ahead on a second thread;
- ``training.loop``: `train_model` and `train_from_config` (resumable runs:
  `specutils_cinn.checkpoint`; a start from another model's weights), and
  `resolve_line_windows`, the conditioner's line windows on a model grid.

Every public name is importable from ``specutils_cinn.training``, as before this package was
split into modules.
"""

from __future__ import annotations

from .augmentation import augment_batch, renormalize_batch
from .batches import BatchStream
from .config import SIMULATOR_KEYS, TrainingConfig, TrainingFile, read_training_file
from .data import TrainingSet, load_training_set, save_training_set
from .loop import (
    SELECTION_REALISATIONS,
    SELECTION_REALIZATIONS,
    resolve_line_windows,
    train_from_config,
    train_model,
)
from .prior import LabelPrior
from .simulation import EmulatorSimulator, SpectrumSimulator

__all__ = [
    "SELECTION_REALISATIONS",
    "SELECTION_REALIZATIONS",
    "SIMULATOR_KEYS",
    "BatchStream",
    "EmulatorSimulator",
    "LabelPrior",
    "SpectrumSimulator",
    "TrainingConfig",
    "TrainingFile",
    "TrainingSet",
    "augment_batch",
    "load_training_set",
    "read_training_file",
    "renormalize_batch",
    "resolve_line_windows",
    "save_training_set",
    "train_from_config",
    "train_model",
]
