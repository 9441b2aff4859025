"""Modules that moved keep their old import paths for one release (re-export modules), and the
British spellings that were renamed keep working as aliases."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

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


def test_segment_centres_is_an_alias_of_centers():
    from specutils_cinn.wavelength_grid import GridSegment

    seg = GridSegment("A", 5000.0, 5001.0, 0.25)
    np.testing.assert_array_equal(seg.centers, [5000.0, 5000.25, 5000.5, 5000.75, 5001.0])
    np.testing.assert_array_equal(seg.centres, seg.centers)
