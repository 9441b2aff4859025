"""Modules that moved keep their old import paths for one release (re-export modules), and the
British spellings that were renamed keep working as aliases (the later renames with an
`~astropy.utils.exceptions.AstropyDeprecationWarning`)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from astropy import units as u
from astropy.utils.exceptions import AstropyDeprecationWarning
from fourmost_files import write_container
from specutils import Spectrum, SpectrumCollection, SpectrumList

import specutils_cinn  # noqa: F401  (registers the readers)

#: old module -> (new home, the public names the old module had)
MOVED = {
    "specutils_cinn.grid": ("specutils_cinn.wavelength_grid",
                            ["GridSegment", "WavelengthGrid", "crop_grid", "pixel_map"]),
    "specutils_cinn.normalisation": ("specutils_cinn.inputs.normalization",
                                     ["fit_continuum", "fit_segment_continuum",
                                      "normalize_continuum"]),
    "specutils_cinn.resampling": ("specutils_cinn.inputs.resampling",
                                  ["find_gaps", "flux_conserving_resample", "gap_edges",
                                   "insert_gaps", "pixel_edges"]),
    "specutils_cinn.noise_estimate": ("specutils_cinn.inputs.noise_estimate",
                                      ["der_snr", "masked_quantile"]),
    "specutils_cinn.simulation": ("specutils_cinn.training",
                                  ["EmulatorSimulator", "LabelPrior", "SpectrumSimulator"]),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_reexports_its_public_names(old):
    new, names = MOVED[old]
    old_mod, new_mod = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert name in old_mod.__all__, name
        assert getattr(old_mod, name) is getattr(new_mod, name), name
    assert "next release" in old_mod.__doc__


def test_segment_british_spelling_is_an_alias_of_centers():
    from specutils_cinn.wavelength_grid import GridSegment

    seg = GridSegment("A", 5000.0, 5001.0, 0.25)
    np.testing.assert_array_equal(seg.centers, [5000.0, 5000.25, 5000.5, 5000.75, 5001.0])
    np.testing.assert_array_equal(seg.centres, seg.centers)


# --------------------------------------------------------------------------------------------
# British spellings renamed with a deprecation warning: the old names work for this release
# --------------------------------------------------------------------------------------------
def test_default_fiber_status_and_its_deprecated_british_name():
    from specutils_cinn.io import fourmost_mec

    assert fourmost_mec.DEFAULT_FIBER_STATUS == 2  # no warning (warnings are errors here)
    with pytest.warns(AstropyDeprecationWarning, match="use DEFAULT_FIBER_STATUS"):
        assert fourmost_mec.DEFAULT_FIBRE_STATUS == 2
    with pytest.raises(AttributeError, match="NO_SUCH_NAME"):
        fourmost_mec.NO_SUCH_NAME  # noqa: B018


def _rows(spectra):
    return len(spectra) if isinstance(spectra, SpectrumList) else spectra.shape[0]


@pytest.mark.parametrize("cls", [Spectrum, SpectrumList, SpectrumCollection])
def test_container_readers_take_fiber_status_and_the_deprecated_fibre_status(tmp_path, cls):
    path = write_container(tmp_path, "LJ", n_fibers=3, sky=2)
    assert _rows(cls.read(path)) == 3
    assert _rows(cls.read(path, fiber_status=None)) == 5  # no warning
    with pytest.warns(AstropyDeprecationWarning, match='"fibre_status" was deprecated'):
        assert _rows(cls.read(path, fibre_status=None)) == 5
    with pytest.warns(AstropyDeprecationWarning), pytest.raises(TypeError):
        cls.read(path, fiber_status=None, fibre_status=1)


def test_container_loaders_called_directly(tmp_path):
    from specutils_cinn.io import fourmost_mec_list_loader, fourmost_mec_loader

    path = write_container(tmp_path, "LJ", n_fibers=3, sky=2)
    assert fourmost_mec_loader(path, fiber_status=1).shape[0] == 2
    with pytest.warns(AstropyDeprecationWarning, match="fibre_status"):
        assert len(fourmost_mec_list_loader(path, fibre_status=1)) == 2


def test_container_meta_has_the_american_and_for_now_the_british_keys(tmp_path):
    from specutils_cinn.io import META_KEYS

    path = write_container(tmp_path, "LJ", n_fibers=3, sky=2)
    two_d = Spectrum.read(path)
    assert list(two_d.meta["fibers"]["OBJ_NME"]) == ["obj000", "obj001", "obj002"]
    assert two_d.meta["fibres"] is two_d.meta["fibers"]
    assert SpectrumCollection.read(path).meta["fibres"] is not None
    one = SpectrumList.read(path)[1]
    assert one.meta["fiber"]["OBJ_NME"] == "obj001"
    assert one.meta["fibre"] is one.meta["fiber"]
    assert {"fiber", "fibers", "fibre", "fibres"} <= set(META_KEYS)


def test_write_fourmost_container_fibers_and_the_deprecated_fibres(tmp_path):
    from astropy.io import fits

    from specutils_cinn.io.lookalike import write_fourmost_container

    flux, columns = np.ones((2, 10)), {"FIB_ID": [7, 8], "FIB_ST": [2, 1]}
    new, old = tmp_path / "new_LJ11_x.fits", tmp_path / "old_LJ11_x.fits"
    write_fourmost_container(new, 4000.0, 1.0, flux, fibers=columns)  # no warning
    with pytest.warns(AstropyDeprecationWarning, match='"fibres" was deprecated'):
        write_fourmost_container(old, 4000.0, 1.0, flux, fibres=columns)
    for path in (new, old):
        with fits.open(path) as hdul:
            assert list(hdul["FIBMETATAB"].data["FIB_ID"]) == [7, 8]
    with pytest.warns(AstropyDeprecationWarning), pytest.raises(TypeError):
        write_fourmost_container(old, 4000.0, 1.0, flux, fibers=columns, fibres=columns,
                                 overwrite=True)


def test_irwin_atoms_ionization_energy_and_the_deprecated_british_name(tmp_path):
    from specutils_cinn.synthesis.line_strength import IrwinAtoms

    path = tmp_path / "IRWIN_atoms_v07.3.dat"
    path.write_text(
        "# dumb molec. code name IP npart coeff(1:npart)\n"
        "    84             26.00 '               fe'  0.000   2    1.0D+00  0.0D+00\n"
        "    85             26.01 '              fe+'  7.902   2    1.0D+00  0.0D+00\n"
    )
    atoms = IrwinAtoms(path)
    assert atoms.ionization_energy == {(26, 0): 0.0, (26, 1): 7.902}  # no warning
    with pytest.warns(AstropyDeprecationWarning, match="Use ionization_energy instead"):
        assert atoms.ionisation_energy is atoms.ionization_energy
    with pytest.warns(AstropyDeprecationWarning, match="ionization_energy"):
        atoms.ionisation_energy = {(26, 1): 8.0}
    assert atoms.ionization_energy == {(26, 1): 8.0}


@pytest.mark.parametrize("keys", [("fibers", "fiber"), ("fibres", "fibre")])
def test_survey_header_velocity_reads_the_fiber_keys_and_the_british_ones(keys):
    from astropy.table import Table

    from specutils_cinn.survey.chunk import _header_rv

    rows, row = keys
    two_d = Spectrum(flux=np.ones((2, 4)) * u.one, spectral_axis=np.arange(4.0) * u.AA,
                     meta={rows: Table({"VRAD": [1.5, -2.0]})})
    np.testing.assert_array_equal(_header_rv(two_d, "VRAD", 2), [1.5, -2.0])
    one = Spectrum(flux=np.ones(4) * u.one, spectral_axis=np.arange(4.0) * u.AA,
                   meta={row: {"VRAD": 3.0}})
    np.testing.assert_array_equal(_header_rv(one, "VRAD", 1), [3.0])
