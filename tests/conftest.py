"""Shared fixtures: a small cINN trained on a problem whose posterior is known exactly.

Also the hypothesis profiles of the fuzz tests (tests/test_fuzz_inputs.py): ``default`` runs
a few hundred examples in all, ``ci`` (``HYPOTHESIS_PROFILE=ci``, set by ``.ci/run``) at least
1000 per test.
"""

import os

import pytest
from hypothesis import HealthCheck, settings
from linear_gaussian import LinearGaussianProblem

from specutils_cinn.models import CINNModel
from specutils_cinn.training import TrainingConfig, train_model

_FUZZ = {"deadline": None, "database": None, "print_blob": True,
         "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("default", max_examples=150, **_FUZZ)
settings.register_profile("ci", max_examples=1000, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def linear_gaussian_model(tmp_path_factory):
    """(problem, CINNModel) trained once per test session (about 30 s on 2 CPU cores), saved
    and loaded back as users get models."""
    prob = LinearGaussianProblem()
    config = TrainingConfig(steps=2500, batch_size=256, learning_rate=2e-3, warmup_steps=100,
                            eval_every=500, snr_range=(prob.snr, prob.snr), masked_fraction=0.0,
                            max_gaps=0, photon_noise=False, seed=0, device="cpu",
                            weight_decay=0.0)
    model, _ = train_model(prob.training_set(), prob.architecture, config,
                           name="linear-gaussian-test", version="0.0.1", log=None,
                           normalization={"kind": "continuum"})
    path = tmp_path_factory.mktemp("linear-gaussian-model")
    model.save(path)
    return prob, CINNModel.load(path)
