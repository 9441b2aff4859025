"""Shared fixtures: a small cINN trained on a problem whose posterior is known exactly.

Also the hypothesis profiles of the fuzz tests (tests/inputs/test_fuzz_inputs.py): ``default`` runs
25 examples per test (the quick local run), ``ci`` (``HYPOTHESIS_PROFILE=ci``, set by
``.ci/run``) 1000 per test.

The default ``pytest`` run is the fast set: pyproject.toml deselects the tests marked ``slow``
(seconds each: they train networks, run Turbospectrum several times, start interpreters or
repeat survey runs) and ``synthesis`` (they need the Turbospectrum install;
tests/synthesis/conftest.py marks them). ``pytest -m ""`` runs everything, as CI does.
"""

import json
import os

import pytest
from hypothesis import HealthCheck, settings
from linear_gaussian import MODEL_DIR, LinearGaussianProblem

from specutils_cinn.model import CINNModel

_FUZZ = {"deadline": None, "database": None, "print_blob": True,
         "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("default", max_examples=25, **_FUZZ)
settings.register_profile("ci", max_examples=1000, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def linear_gaussian_model():
    """(problem, CINNModel): the small cINN trained on the linear-Gaussian problem, loaded as
    users load models (safetensors, every file's SHA-256 checked).

    It is committed under tests/data/linear-gaussian-model/ (about 130 kB), made by
    ``scripts/make_test_model.py`` from the recipe in tests/linear_gaussian.py; the slow test
    ``test_training_recovers_the_exact_posterior_end_to_end`` trains it afresh.
    """
    hashes = json.loads((MODEL_DIR / "sha256.json").read_text())
    model = CINNModel.load(MODEL_DIR, expected_sha256={"metadata": hashes["metadata"],
                                                       "weights": hashes["weights"]})
    return LinearGaussianProblem(), model
