"""Label conventions (specutils_cinn.parameters) and constants: one home each."""

import numpy as np
import pytest
import torch
from astropy import constants as const
from astropy import units as u

from specutils_cinn import emulator, simulation
from specutils_cinn.constants import C_KMS
from specutils_cinn.parameters import (
    DEFAULT_PARAMETERS,
    EMULATOR_LABELS,
    SOLAR_A_LI,
    a_li_from_li_fe,
    emulator_label_values,
    li_fe_from_a_li,
    parameter_unit,
)
from specutils_cinn.synthesis import design


def test_old_locations_are_the_same_objects():
    assert design.SOLAR_A_LI is SOLAR_A_LI and emulator.SOLAR_A_LI is SOLAR_A_LI
    assert emulator.EMULATOR_LABELS is EMULATOR_LABELS
    assert simulation.DEFAULT_PARAMETERS is DEFAULT_PARAMETERS
    assert emulator.a_li_from_li_fe is a_li_from_li_fe


def test_every_label_has_a_unit():
    for name in {*DEFAULT_PARAMETERS, *EMULATOR_LABELS}:
        parameter_unit(name)


def test_lithium_conversions_are_inverse():
    li_fe, fe_h = np.array([0.5, -0.2]), np.array([-1.0, 0.3])
    a_li = a_li_from_li_fe(li_fe, fe_h)
    np.testing.assert_array_equal(a_li, li_fe + SOLAR_A_LI + fe_h)
    np.testing.assert_allclose(li_fe_from_a_li(a_li, fe_h), li_fe, rtol=0, atol=1e-12)
    assert float(a_li_from_li_fe(0.0, 0.0)) == SOLAR_A_LI == 1.05
    t = torch.tensor([0.5, -0.2], dtype=torch.float64)
    out = a_li_from_li_fe(t, torch.zeros(2, dtype=torch.float64))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert isinstance(a_li_from_li_fe([0.5], [-1.0]), np.ndarray)


def test_emulator_label_values():
    values = {"teff": np.array([5000.0]), "fe_h": np.array([-1.0]), "li_fe": np.array([0.4])}
    labels = ("teff", "mg_fe", "a_li")
    # a value wins over a default, also the [Li/Fe] that A(Li) is derived from
    got = emulator_label_values(labels, values, {"teff": 1.0, "mg_fe": 0.2, "li_fe": 0.0})
    assert got[0] is values["teff"] and got[1] == 0.2
    np.testing.assert_array_equal(got[2], values["li_fe"] + SOLAR_A_LI + values["fe_h"])
    got = emulator_label_values(labels, values, {"mg_fe": 0.2})
    np.testing.assert_array_equal(got[2], values["li_fe"] + SOLAR_A_LI + values["fe_h"])
    # the default [Li/Fe] for a model that does not predict it
    no_li = {"teff": values["teff"], "fe_h": values["fe_h"]}
    got = emulator_label_values(labels, no_li, {"mg_fe": 0.2, "li_fe": -0.5})
    np.testing.assert_array_equal(got[2], -0.5 + SOLAR_A_LI + values["fe_h"])
    assert emulator_label_values(("a_li",), {"a_li": 2.0, "fe_h": 0.0}) == [2.0]
    with pytest.raises(KeyError, match="mg_fe"):
        emulator_label_values(labels, values)


def test_speed_of_light():
    assert type(C_KMS) is float
    assert C_KMS == const.c.to_value(u.km / u.s) == 299792.458


def test_parameter_values_from_rows_mappings_and_sequences():
    from astropy.table import QTable
    from astropy.utils.masked import Masked

    from specutils_cinn.parameters import parameter_values

    names, units = ["teff", "logg", "mg_fe"], [u.K, u.dex(u.cm / u.s**2), u.dex]
    table = QTable({"teff": [5772.0] * u.K, "logg": u.Dex([4.44], u.dex(u.cm / u.s**2)),
                    "mg_fe": Masked([0.1] * u.dex, mask=[True])})
    expected = np.array([5772.0, 4.44, 0.1])
    assert np.allclose(parameter_values(table[0], names, units), expected)  # masked: underneath
    mapping = {"teff": 5.772 * u.kK, "logg": 4.44, "mg_fe": 0.1}
    assert np.allclose(parameter_values(mapping, names, units), expected)
    assert np.array_equal(parameter_values([5772, 4.44, 0.1], names, units), expected)
    with pytest.raises(ValueError, match="no value for parameter 'mg_fe'"):
        parameter_values({"teff": 5772.0, "logg": 4.4}, names, units)
    with pytest.raises(ValueError, match="expected 3 parameter values"):
        parameter_values([5772.0, 4.4], names, units)
    with pytest.raises(ValueError, match=r"not finite: \['logg'\]"):
        parameter_values([5772.0, np.nan, 0.0], names, units)
