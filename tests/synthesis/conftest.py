"""The synthesis install shared by the tests that run Turbospectrum.

Tests that need the real install take the ``synthesis_install`` fixture. Without an install
they are skipped, unless ``SPECUTILS_CINN_BUILD_SYNTHESIS=1`` is set (CI sets it): then the
install is built once for the session (gfortran and PyPI access needed) and a failed build is
a test error, not a skip.

Every test here that takes ``synthesis_install`` (directly or through a fixture) is marked
``synthesis`` by `pytest_collection_modifyitems`, so the default ``pytest`` run, which
deselects ``synthesis`` and ``slow`` (pyproject.toml), leaves it out; ``pytest -m ""`` (CI) or
``pytest -m synthesis`` runs it. A test that asks for the install at run time
(``request.getfixturevalue``) carries ``@pytest.mark.synthesis`` itself.
"""

import os
from pathlib import Path

import pytest

from specutils_cinn.synthesis.install import (
    SynthesisNotFoundError,
    build_synthesis,
    find_synthesis,
)


@pytest.fixture(scope="session")
def synthesis_install():
    try:
        return find_synthesis()
    except SynthesisNotFoundError as exc:
        if os.environ.get("SPECUTILS_CINN_BUILD_SYNTHESIS") == "1":
            return build_synthesis()
        pytest.skip(f"Turbospectrum install not built: {exc}")


def pytest_collection_modifyitems(config, items):
    """Mark ``synthesis`` every test of this folder that uses the ``synthesis_install``."""
    here = Path(__file__).parent
    for item in items:
        if "synthesis_install" in getattr(item, "fixturenames", ()) and here in item.path.parents:
            item.add_marker(pytest.mark.synthesis)
