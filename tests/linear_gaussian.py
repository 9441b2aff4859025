"""A linear-Gaussian inverse problem whose posterior is known exactly.

Parameters x ~ N(0, I) (D = 2, named teff/logg only to satisfy the parameter registry; their
values are unitless here); "spectra" y = 1 + A x + noise with constant noise sigma per pixel.
The posterior is Gaussian with covariance (I + A^T A / sigma^2)^-1.

`train_test_model` is the recipe of the small cINN the tests use: ``scripts/make_test_model.py``
runs it once and commits the result to ``tests/data/linear-gaussian-model/`` (loaded by the
``linear_gaussian_model`` fixture of tests/conftest.py); a ``slow`` test in
tests/test_training.py runs it end to end.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from specutils_cinn.flows.conditioning import encode_inputs
from specutils_cinn.model import CINNModel
from specutils_cinn.training import TrainingConfig, TrainingSet, train_model
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

#: Name and version of the committed test model.
MODEL_NAME, MODEL_VERSION = "linear-gaussian-test", "0.0.1"
#: Where the committed test model lives (metadata.json, weights.safetensors, sha256.json).
MODEL_DIR = Path(__file__).resolve().parent / "data" / "linear-gaussian-model"


@dataclass
class LinearGaussianProblem:
    npix: int = 24
    snr: float = 100.0  # per pixel and per Angstrom: 1 A pixels
    seed: int = 3
    parameters: tuple[str, str] = ("teff", "logg")
    a: np.ndarray = field(init=False)

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        self.a = rng.normal(0.0, 0.004, size=(self.npix, 2))

    @property
    def sigma(self) -> float:
        return 1.0 / self.snr

    @property
    def grid(self) -> WavelengthGrid:
        return WavelengthGrid((GridSegment("A", 5000.0, 5000.0 + self.npix - 1, 1.0),))

    @property
    def architecture(self) -> dict:
        return {
            "conditioner": {"kind": "mlp", "channels": [8], "features": 32, "pool": 1,
                            "hidden": 64},
            "n_blocks": 4,
            "subnet_hidden": 64,
            "subnet_layers": 1,
            "clamp": 2.0,
            "permutation_seed": 0,
        }

    def training_set(self, n: int = 8000, seed: int = 0) -> TrainingSet:
        x = np.random.default_rng(seed).normal(size=(n, 2))
        flux = (1.0 + x @ self.a.T).astype(np.float32)
        return TrainingSet(flux, x, list(self.parameters), self.grid, 1e5,
                           {"source": "linear-Gaussian test problem"})

    def observations(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 2))
        y = 1.0 + x @ self.a.T + self.sigma * rng.normal(size=(n, self.npix))
        return y, x

    def exact_posterior(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prec = np.eye(2) + self.a.T @ self.a / self.sigma**2
        cov = np.linalg.inv(prec)
        mean = (y - 1.0) @ self.a @ cov.T / self.sigma**2
        return mean, np.broadcast_to(cov, (y.shape[0], 2, 2))

    def encode(self, y: np.ndarray) -> torch.Tensor:
        return encode_inputs(torch.as_tensor(y, dtype=torch.float32),
                             torch.full(y.shape, self.sigma), torch.ones(y.shape, dtype=bool))


def training_config(prob: LinearGaussianProblem) -> TrainingConfig:
    """The training configuration of the test model (seeded: deterministic on one thread)."""
    return TrainingConfig(steps=2500, batch_size=256, learning_rate=2e-3, warmup_steps=100,
                          eval_every=500, snr_range=(prob.snr, prob.snr), masked_fraction=0.0,
                          max_gaps=0, photon_noise=False, seed=0, device="cpu",
                          weight_decay=0.0)


def recorded_recipe(prob: LinearGaussianProblem) -> dict:
    """`training_config` as a model's metadata records it (JSON types): without the options
    that do not change the result (where checkpoints go, prefetching), nor a
    ``feature_regression`` or ``range_dropout`` of 0 (settings added later are recorded only
    when set)."""
    out = {k: v for k, v in asdict(training_config(prob)).items()
           if k not in ("checkpoint_every", "prefetch")}
    if not out.get("feature_regression"):
        out.pop("feature_regression", None)
    if not out.get("range_dropout"):
        out.pop("range_dropout", None)
        out.pop("range_keep", None)
    return json.loads(json.dumps(out))


def train_test_model(prob: LinearGaussianProblem | None = None) -> CINNModel:
    """Train the test model: about 25 s on one CPU core (2500 steps of batch 256).

    The weights depend only on the seeds, the torch version and the number of threads
    (``scripts/make_test_model.py`` trains on one).
    """
    prob = LinearGaussianProblem() if prob is None else prob
    model, _ = train_model(prob.training_set(), prob.architecture, training_config(prob),
                           name=MODEL_NAME, version=MODEL_VERSION, log=None,
                           normalization={"kind": "continuum"})
    return model
