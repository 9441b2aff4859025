"""Units of specutils input: spectral axes, flux and uncertainty units, radial velocities.

Converts what a specutils object carries into the working values of
`~specutils_cinn.inputs.prepare_spectra`: spectral axes in Angstrom (checked to be
wavelengths, not pixel numbers, and monotonic), flux units checked to be fluxes, the factors
from an uncertainty's unit to the working flux unit, and radial velocities as relativistic
Doppler factors (`doppler_factor`). Unit computations are memoized by the structure of the
units (`_memo`): comparing units is slow, and every spectrum read from a file has its own
(equal) unit objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy import units as u

from ..constants import C_KMS

__all__ = ["doppler_factor"]


def doppler_factor(radial_velocity: u.Quantity) -> np.ndarray:
    """Relativistic Doppler factor ``lambda_obs / lambda_rest`` for radial velocities.

    Parameters
    ----------
    radial_velocity : astropy.units.Quantity
        Velocities (positive: receding), any velocity unit, any shape.

    Returns
    -------
    numpy.ndarray
        ``sqrt((1 + beta) / (1 - beta))`` with ``beta = v / c``, the same factor as
        ``1 + z`` in `~specutils.Spectrum` and `~astropy.coordinates.SpectralCoord`.

    Raises
    ------
    ValueError
        If a velocity is not finite, not a velocity, or not slower than light.
    """
    try:
        v = u.Quantity(radial_velocity).to_value(u.km / u.s)
    except (u.UnitsError, TypeError) as exc:
        raise ValueError(
            f"radial_velocity must be a Quantity with velocity units (e.g. 12.3 * u.km / u.s), "
            f"got {radial_velocity!r}"
        ) from exc
    beta = np.asarray(v, dtype=np.float64) / C_KMS
    if not np.all(np.isfinite(beta)) or np.any(np.abs(beta) >= 1):
        raise ValueError("radial velocities must be finite and slower than light")
    return np.sqrt((1.0 + beta) / (1.0 - beta))


def _own_doppler(axis: Any) -> float:
    """Doppler factor ``1 + z`` from the radial velocity stored on a spectral axis."""
    rv = getattr(axis, "radial_velocity", None)
    if rv is None:
        return 1.0
    rv = u.Quantity(rv)
    if rv.size != 1 or rv.value == 0:
        return 1.0 if rv.size == 1 else float(np.mean(doppler_factor(rv)))
    return float(doppler_factor(rv))


def _angstrom(axis: Any, label: str, monotonic: bool = True) -> np.ndarray:
    """Spectral axis values in Angstrom (any spectral unit); checked, maybe decreasing."""
    q = axis.view(u.Quantity) if isinstance(axis, u.Quantity) else u.Quantity(axis)
    if q.unit == u.pix:
        raise ValueError(
            f"input {label}: spectral axis unit '{q.unit}' cannot be converted to a wavelength: "
            f"the spectrum has no wavelength solution; {_NEED_WAVELENGTHS}"
        )
    first = _pixel_numbers(np.asarray(q.value))
    if first is not None:
        raise ValueError(
            f"input {label}: the spectral axis holds the pixel numbers {first}, {first + 1}, "
            f"{first + 2}, ... (in {q.unit}), not wavelengths: the spectrum has no wavelength "
            "solution (specutils reads a FITS spectrum without CRVAL1/CDELT1/CTYPE1 keywords "
            f"this way); {_NEED_WAVELENGTHS}"
        )
    try:
        if q.unit is u.AA:
            wave = np.asarray(q.value, dtype=np.float64)
        else:
            wave = np.asarray(q.to_value(u.AA, equivalencies=u.spectral()), dtype=np.float64)
    except u.UnitsError as exc:
        raise ValueError(
            f"input {label}: spectral axis unit '{q.unit}' cannot be converted to a wavelength"
        ) from exc
    if not (np.all(np.isfinite(wave)) and np.all(wave > 0)):
        raise ValueError(f"input {label}: spectral axis values must be finite and positive")
    if monotonic and wave.ndim == 1:
        _monotonic(wave, label)
    return wave


_NEED_WAVELENGTHS = (
    "give the spectrum a spectral axis in wavelength (or frequency, wavenumber, energy) units"
)


def _pixel_numbers(values: np.ndarray) -> int | None:
    """0 or 1 if every row of a spectral axis is the pixel numbers 0, 1, 2, ... or 1, 2, 3, ...

    That is what a spectrum without a wavelength solution gets: no real spectrum starts at
    0 or 1 Angstrom (or nm, Hz, ...) with a step of exactly 1.
    """
    rows = np.atleast_2d(values)
    if rows.shape[-1] < 2 or rows.dtype.kind not in "iuf":
        return None
    first = rows[..., 0]
    if not (np.all(first == first.flat[0]) and first.flat[0] in (0, 1)):
        return None
    start = int(first.flat[0])
    if np.array_equal(rows, np.broadcast_to(np.arange(start, start + rows.shape[-1]), rows.shape)):
        return start
    return None


#: Factors removed before a flux unit's dimensions are checked: counts of any kind and
#: "per pixel / channel / bin / beam / solid angle" (solid angles decompose to rad**2).
_COUNT_LIKE = frozenset({"ct", "electron", "adu", "ph", "DN", "chan", "pix", "bin", "vox",
                         "beam", "rad"})


def _flux_dimensions() -> tuple[u.UnitBase, ...]:
    """Every (energy or count) [per time] [per area] [per wavelength, frequency or energy].

    Counts per frequency without a time (dimension: time) are left out: a flux in seconds
    is a mistake far more often than a count spectrum per Hz.
    """
    out = []
    for amount in (u.J, u.one):
        for per_time in (u.one, u.s):
            for per_area in (u.one, u.m**2):
                for per_spectral in (u.one, u.m, u.Hz, u.J):
                    if amount is u.one and per_time is u.one and per_spectral is u.Hz:
                        continue
                    out.append(amount / (per_time * per_area * per_spectral))
    return tuple(out)


_FLUX_DIMENSIONS = _flux_dimensions()


def _is_flux_unit(unit: Any) -> bool:
    """Whether a flux unit is a flux: see `_check_flux_unit`."""
    if not isinstance(unit, u.UnitBase) or isinstance(unit, u.FunctionUnitBase):
        return False
    if unit.is_equivalent(u.one):
        return True
    try:
        d = unit.decompose()
    except u.UnitsError:  # pragma: no cover
        return False
    rest = u.Unit(1.0)
    for base, power in zip(d.bases, d.powers, strict=True):
        if base.name not in _COUNT_LIKE:
            rest = rest * base**power
    return any(rest.is_equivalent(dim) for dim in _FLUX_DIMENSIONS)


def _check_flux_unit(unit: Any, label: str) -> None:
    """Reject flux units that are not fluxes (kelvin, meters, magnitudes, ...).

    Accepted: dimensionless (normalized) flux, and an energy or a count (``ct``,
    ``electron``, ``adu``, ``ph``, ``DN``), optionally per time, per area and per
    wavelength, frequency or energy, optionally per pixel, channel, bin, beam or solid
    angle: spectral flux densities (``erg / (s cm2 Angstrom)``, ``Jy``), surface
    brightnesses, luminosity densities, photon and count rates, counts.
    """
    if not _memo(_is_flux_unit, unit):
        raise u.UnitConversionError(
            f"input {label}: flux unit '{unit}' is not a unit of flux; use a spectral flux "
            "density (e.g. erg / (s cm2 Angstrom), W / (m2 nm), Jy), counts or a count rate "
            "(ct, electron / s, adu), or dimensionless flux (normalized spectra)"
        )


def _monotonic(wave: np.ndarray, label: str) -> tuple[np.ndarray, bool]:
    """Return (increasing axis, whether it was flipped); error if not strictly monotonic."""
    if len(wave) < 2:
        raise ValueError(f"input {label}: a spectrum needs at least 2 pixels")
    d = np.diff(wave)
    if np.all(d > 0):
        return wave, False
    if np.all(d < 0):
        return wave[::-1], True
    raise ValueError(f"input {label}: the spectral axis is not strictly monotonic")


def _uncertainty_factor(kind: str, unc_unit: u.UnitBase | None, unit: u.UnitBase) -> float:
    """Factor from the uncertainty's values to the same kind in the working flux unit."""
    power = {"std": 1, "var": 2, "ivar": -2}[kind]
    factor = 1.0
    if unc_unit is not None and unc_unit is not unit:
        factor = float(u.Unit(unc_unit).to(unit**power))
    return factor * (_memo(_dimensionless_scale, unit) or 1.0) ** power


def _dimensionless_scale(unit: u.UnitBase) -> float | None:
    """Factor to dimensionless_unscaled, or None if the unit is not dimensionless."""
    return float(unit.to(u.one)) if unit.is_equivalent(u.one) else None


#: Results of unit computations, keyed by the structure of the units: comparing units
#: is slow, and every spectrum read from a file has its own (equal) unit objects.
_MEMO: dict[tuple[Any, ...], Any] = {}


def _unit_key(x: Any) -> Any:
    if isinstance(x, u.UnitBase):
        try:
            return (float(x.scale), tuple(b.name for b in x.bases), tuple(map(float, x.powers)))
        except (AttributeError, TypeError, ValueError):  # pragma: no cover
            return _NO_KEY
    return x


_NO_KEY = object()


def _memo(fn: Any, *args: Any) -> Any:
    key = (fn.__name__,) + tuple(_unit_key(a) for a in args)
    if _NO_KEY in key:  # pragma: no cover
        return fn(*args)
    if key in _MEMO:
        return _MEMO[key]
    value = fn(*args)
    if len(_MEMO) > 1024:
        _MEMO.clear()
    _MEMO[key] = value
    return value
