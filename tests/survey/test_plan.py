"""Planning a survey run (specutils_cinn.survey.plan): the radial velocity argument."""

import pytest
from astropy import units as u

from specutils_cinn.survey import parse_radial_velocity


@pytest.mark.parametrize("value, expected", [
    (None, ("none", None)), (12.5, ("value", 12.5)), ("-3.5", ("value", -3.5)),
    ("2 m/s", ("value", 0.002)), ("header:VRAD", ("header", "VRAD")),
    ("column:rv", ("column", "rv")), ("estimate", ("estimate", None)),
    (3 * u.km / u.s, ("value", 3.0)),
])
def test_parse_radial_velocity(value, expected):
    assert parse_radial_velocity(value) == expected


@pytest.mark.parametrize("value", ["fast", "header:", "3 kg", True])
def test_parse_radial_velocity_rejects(value):
    with pytest.raises(ValueError, match="radial velocity"):
        parse_radial_velocity(value)
