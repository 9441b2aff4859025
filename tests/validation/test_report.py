"""The numbers of the validation pages: populations, flags, resolutions, display."""

import numpy as np
import pytest

from specutils_cinn.flags import QualityFlag
from specutils_cinn.validation.report import (
    flag_fractions,
    flag_names,
    format_value,
    parameter_label,
    pick_snr,
    population_masks,
    quadrature_resolving_power,
)


def test_population_masks():
    logg = np.array([4.5, 3.5, 3.49, 1.0])
    fe_h = np.array([-2.0, -1.5, -0.5, 0.3])
    m = population_masks(logg, fe_h)
    assert list(m["all"]) == [True] * 4
    assert list(m["dwarfs (log g >= 3.5)"]) == [True, True, False, False]
    assert list(m["giants (log g < 3.5)"]) == [False, False, True, True]
    assert list(m["[Fe/H] < -1.5"]) == [True, False, False, False]
    assert list(m["-1.5 <= [Fe/H] < -0.5"]) == [False, True, False, False]
    assert list(m["[Fe/H] >= -0.5"]) == [False, False, True, True]


def test_flag_fractions_and_names():
    flags = np.array([0, int(QualityFlag.LOW_SNR | QualityFlag.PARAMETER_AT_EDGE),
                      int(QualityFlag.LOW_SNR), 0])
    fr = flag_fractions(flags)
    assert fr["LOW_SNR"] == 0.5 and fr["PARAMETER_AT_EDGE"] == 0.25
    assert fr["none"] == 0.5 and fr["LOW_COVERAGE"] == 0.0
    assert set(fr) == {fl.name for fl in QualityFlag if int(fl)} | {"none"}
    assert flag_fractions(np.array([], dtype=int))["none"] == 0.0  # no division by zero
    assert flag_names(0) == "none"
    assert flag_names(int(QualityFlag.LOW_SNR | QualityFlag.LOW_COVERAGE)) == (
        "LOW_COVERAGE|LOW_SNR")


def test_quadrature_resolving_power():
    # broadening R = 20000 to R = 7000: the extra Gaussian adds in quadrature
    r_eff = quadrature_resolving_power(7000.0, 20000.0)(np.array([5000.0]))
    assert 1 / r_eff[0] ** 2 + 1 / 20000.0**2 == pytest.approx(1 / 7000.0**2)
    # a resolving power that depends on wavelength
    r_eff = quadrature_resolving_power(7000.0, lambda w: 20000.0 * w / 5000.0)
    assert 1 / r_eff(np.array([10000.0]))[0] ** 2 + 1 / 40000.0**2 == pytest.approx(
        1 / 7000.0**2)
    with pytest.raises(ValueError, match="not below"):
        quadrature_resolving_power(30000.0, 20000.0)(np.array([5000.0]))


def test_display_and_snr_choice():
    assert parameter_label("mg_fe") == "[Mg/Fe]" and parameter_label("logg") == "log g"
    assert parameter_label("something") == "something"
    assert format_value("teff", 5771.6) == "5772"
    assert format_value("teff", 12.4, "signed") == "+12"
    assert format_value("vsini", 3.14159) == "3.14"
    assert format_value("logg", -0.01234, "signed") == "-0.012"
    assert format_value("logg", 0.678, "fraction") == "0.68"
    assert format_value("logg", float("nan")) == "--" and format_value("logg", None) == "--"
    assert pick_snr([10.0, 50.0, 250.0], [50.0, 250.0]) == [50.0, 250.0]
    assert pick_snr([10.0, 30.0], [50.0, 250.0]) == [10.0, 30.0]
    assert pick_snr([30.0], [50.0, 250.0]) == [30.0]


def test_population_masks_add_the_cool_stars_with_teff():
    from specutils_cinn.validation.report import COOL_TEFF

    logg, fe_h = np.array([4.5, 2.0, 4.0]), np.array([0.0, -1.0, -3.0])
    m = population_masks(logg, fe_h, np.array([4000.0, COOL_TEFF, 6000.0]))
    assert list(m[f"Teff < {COOL_TEFF:.0f}"]) == [True, False, False]
    assert f"Teff < {COOL_TEFF:.0f}" not in population_masks(logg, fe_h)


def test_goal_verdict_needs_scatter_and_coverage():
    from specutils_cinn.validation.report import V2_GOALS, goal_verdict

    assert goal_verdict(20.0, 25.0, 0.68, 0.95) == "**met**"
    assert goal_verdict(25.0, 25.0, 0.71, 0.92) == "**met**"        # the edges count
    assert goal_verdict(20.0, 25.0, 0.60, 0.95) == "scatter met, coverage not"
    assert goal_verdict(20.0, 25.0, 0.68, 0.99) == "scatter met, coverage not"
    assert goal_verdict(30.0, 25.0, 0.68, 0.95) == "coverage met, scatter not"
    assert goal_verdict(30.0, 25.0, 0.50, 0.80) == "**not met**"
    assert V2_GOALS["hr"]["teff"] == 25.0 and V2_GOALS["lr"]["teff"] == 40.0
    assert set(V2_GOALS["lr"]) == {"teff", "logg", "fe_h", "mg_fe", "ca_fe"}
