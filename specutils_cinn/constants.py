"""Physical constants used across the package, in the units the code works in."""

from __future__ import annotations

from astropy import constants as const
from astropy import units as u

__all__ = ["C_KMS"]

#: Speed of light in vacuum in km/s, from `astropy.constants.c` (exact: 299792.458), as a
#: Python float.
C_KMS: float = float(const.c.to_value(u.km / u.s))
