"""The synthesis install shared by the tests that run Turbospectrum.

Tests that need the real install take the ``synthesis_install`` fixture. Without an install
they are skipped, unless ``SPECUTILS_CINN_BUILD_SYNTHESIS=1`` is set (CI sets it): then the
install is built once for the session (gfortran and PyPI access needed) and a failed build is
a test error, not a skip.
"""

import os

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
