"""specutils_cinn._forwarding: a re-exported setting stays one variable."""

import sys
import types

import pytest

from specutils_cinn._forwarding import forward_settings


@pytest.fixture
def modules():
    home = types.ModuleType("fake_home")
    home.LIMIT = 10
    face = types.ModuleType("fake_face")
    face.LIMIT = home.LIMIT  # as ``from home import LIMIT`` binds it
    face.OTHER = 1
    sys.modules["fake_face"] = face
    yield home, face
    del sys.modules["fake_face"]


def test_reads_and_assignments_reach_the_home(modules):
    home, face = modules
    forward_settings("fake_face", {"LIMIT": home})
    assert "LIMIT" not in vars(face)
    face.LIMIT = 20
    assert home.LIMIT == 20
    home.LIMIT = 30
    assert face.LIMIT == 30
    face.OTHER = 2  # other names are the module's own
    assert face.OTHER == 2 and not hasattr(home, "OTHER")
    with pytest.raises(AttributeError, match="no attribute 'MISSING'"):
        face.MISSING  # noqa: B018


def test_a_setting_the_home_lacks_is_refused(modules):
    home, _ = modules
    with pytest.raises(ValueError, match="no setting 'NOPE'"):
        forward_settings("fake_face", {"NOPE": home})
