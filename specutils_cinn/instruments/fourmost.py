r"""The 4MOST spectrographs: wavelength grids and resolving powers of the two instrument modes.

Figures are from the ESO 4MOST instrument description
(https://www.eso.org/sci/facilities/paranal/instruments/4most/inst.html) and de Jong et al. 2019,
The Messenger 175, 3 (https://doi.org/10.18727/0722-6691/5117):

- High-resolution spectrograph (HRS, 812 fibers): three arms, blue ``HB`` 3926-4355 A, green
  ``HG`` 5160-5730 A and red ``HR`` 6100-6790 A, :math:`R \approx 18\,000-21\,000`
  (ESO: :math:`R > 18\,500`).
  The arms are delivered as separate spectra; here they are separate grid segments, never stitched.
  Pixels are 0.05 A wide, as in the consortium's simulations.
- Low-resolution spectrographs (LRS, 1624 fibers): 3700-9500 A, :math:`R \approx 4000-7500`
  (ESO table: :math:`R > 4000-7800`), delivered as one joined spectrum (``LJ``) at 0.25 A per pixel,
  23,201 pixels.

Wavelengths are in air, as the consortium delivers them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from ..wavelength_grid import GridSegment, WavelengthGrid

__all__ = [
    "FOURMOST_HR",
    "FOURMOST_HR_RESOLVING_POWER",
    "FOURMOST_LR",
    "FOURMOST_LR_RESOLVING_POWER",
    "InstrumentSetup",
    "LinearResolvingPower",
    "fourmost_setup",
]


@dataclass(frozen=True)
class LinearResolvingPower:
    r"""A resolving power that changes linearly with wavelength.

    :math:`R(\lambda) = R_0 + (R_1 - R_0)(\lambda - \lambda_0)/(\lambda_1 - \lambda_0)` between
    ``wave_start`` (:math:`\lambda_0`) and ``wave_stop`` (:math:`\lambda_1`); constant at the end
    values outside that range.

    Parameters
    ----------
    wave_start, wave_stop : float
        Wavelengths in Angstrom where the end values apply (``wave_stop > wave_start``).
    r_start, r_stop : float
        Resolving power at ``wave_start`` and at ``wave_stop`` (positive).
    """

    wave_start: float
    wave_stop: float
    r_start: float
    r_stop: float

    def __post_init__(self) -> None:
        vals = (self.wave_start, self.wave_stop, self.r_start, self.r_stop)
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"LinearResolvingPower values must be finite, got {vals}")
        if not self.wave_stop > self.wave_start > 0:
            raise ValueError("LinearResolvingPower needs 0 < wave_start < wave_stop")
        if not (self.r_start > 0 and self.r_stop > 0):
            raise ValueError("LinearResolvingPower needs positive resolving powers")

    def __call__(self, wavelength: Any) -> np.ndarray:
        """Resolving power at the given wavelengths.

        Parameters
        ----------
        wavelength : float or array-like
            Wavelengths in Angstrom.

        Returns
        -------
        `numpy.ndarray`
            float64 resolving powers, same shape as ``wavelength``.
        """
        return np.interp(
            np.asarray(wavelength, dtype=np.float64),
            [self.wave_start, self.wave_stop],
            [self.r_start, self.r_stop],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable description, ``{"kind": "linear", "wavelength": ..., ...}``."""
        return {
            "kind": "linear",
            "wavelength": [self.wave_start, self.wave_stop],
            "resolving_power": [self.r_start, self.r_stop],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LinearResolvingPower:
        """Build from the output of `to_dict`.

        Raises
        ------
        ValueError
            If the description is malformed.
        """
        try:
            if d["kind"] != "linear":
                raise ValueError(f"unknown resolving-power kind {d['kind']!r}")
            (w0, w1), (r0, r1) = d["wavelength"], d["resolving_power"]
            return cls(float(w0), float(w1), float(r0), float(r1))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed resolving-power description: {exc!r}") from exc


def _check_resolving_power(value: Any, segment: str) -> float | Callable[[np.ndarray], Any]:
    if callable(value):
        return value
    if isinstance(value, Mapping):
        return LinearResolvingPower.from_dict(value)
    try:
        r = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"resolving power of segment {segment!r} must be a number or a callable, "
            f"got {type(value).__name__}"
        ) from exc
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"resolving power of segment {segment!r} must be positive, got {r}")
    return r


@dataclass(frozen=True)
class InstrumentSetup:
    r"""An instrument mode: its pixel grid and the resolving power of each grid segment.

    Parameters
    ----------
    name : str
        Name of the setup, e.g. ``"4MOST-HR"``.
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        Pixel grid of the delivered (or model) spectra.
    resolving_power : float, callable or mapping
        Resolving power :math:`R = \lambda/\mathrm{FWHM}` of the line-spread function: one value
        or callable for all segments, or a mapping from every segment name to a value or callable.
        A callable takes wavelengths in Angstrom (float64 array) and returns :math:`R` at each. A
        mapping value may also be the dictionary form of a `LinearResolvingPower`. Stored as a
        read-only mapping from segment name to float or callable.
    """

    name: str
    grid: WavelengthGrid
    resolving_power: Mapping[str, float | Callable[[np.ndarray], Any]]

    def __post_init__(self) -> None:
        if not isinstance(self.grid, WavelengthGrid):
            raise TypeError(f"grid must be a WavelengthGrid, got {type(self.grid).__name__}")
        names = [s.name for s in self.grid.segments]
        rp = self.resolving_power
        if isinstance(rp, Mapping) and not ("kind" in rp and "wavelength" in rp):
            if sorted(rp) != sorted(names):
                raise ValueError(
                    f"resolving_power must give every grid segment {names}, got {sorted(rp)}"
                )
            values = {n: _check_resolving_power(rp[n], n) for n in names}
        else:
            values = {n: _check_resolving_power(rp, n) for n in names}
        object.__setattr__(self, "resolving_power", MappingProxyType(values))

    def resolving_power_at(self, wavelength: Any) -> np.ndarray:
        """Resolving power at each wavelength (Angstrom); NaN outside every segment.

        Parameters
        ----------
        wavelength : array-like
            Wavelengths in Angstrom.

        Returns
        -------
        `numpy.ndarray`
            float64 array of the same shape.
        """
        w = np.asarray(wavelength, dtype=np.float64)
        out = np.full(w.shape, np.nan)
        for seg in self.grid.segments:
            inside = (w >= seg.start - 0.5 * seg.step) & (w <= seg.stop + 0.5 * seg.step)
            r = self.resolving_power[seg.name]
            out[inside] = r(w[inside]) if callable(r) else r
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable description (grid as
        `~specutils_cinn.wavelength_grid.WavelengthGrid.to_dict`).

        Raises
        ------
        TypeError
            If a resolving power is a callable without a ``to_dict`` method.
        """
        rp: dict[str, Any] = {}
        for n, r in self.resolving_power.items():
            if callable(r):
                if not hasattr(r, "to_dict"):
                    raise TypeError(f"resolving power of segment {n!r} cannot be serialized")
                rp[n] = r.to_dict()
            else:
                rp[n] = r
        return {"name": self.name, "grid": self.grid.to_dict(), "resolving_power": rp}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InstrumentSetup:
        """Build a setup from the output of `to_dict`.

        Raises
        ------
        ValueError
            If a key is missing or a value is malformed.
        """
        try:
            return cls(str(d["name"]), WavelengthGrid.from_dict(d["grid"]), d["resolving_power"])
        except KeyError as exc:
            raise ValueError(f"malformed instrument setup description: missing {exc}") from exc


#: High-resolution arms: name, first and last pixel center (Angstrom, air).
_HR_ARMS = (("HB", 3926.0, 4355.0), ("HG", 5160.0, 5730.0), ("HR", 6100.0, 6790.0))
_HR_STEP = 0.05
_LR_RANGE = ("LJ", 3700.0, 9500.0)
_LR_STEP = 0.25

FOURMOST_HR = WavelengthGrid(
    tuple(GridSegment(n, a, b, _HR_STEP) for n, a, b in _HR_ARMS), medium="air"
)
"""4MOST high-resolution grid: arms HB, HG, HR at 0.05 A (8581, 11401, 13801 px), in air."""

FOURMOST_LR = WavelengthGrid((GridSegment(*_LR_RANGE, _LR_STEP),), medium="air")
"""4MOST low-resolution grid: one joined segment LJ, 3700-9500 A at 0.25 A (23,201 px), in air."""

FOURMOST_HR_RESOLVING_POWER: Mapping[str, float] = MappingProxyType(
    {"HB": 20000.0, "HG": 20000.0, "HR": 20000.0}
)
"""Adopted HRS resolving power per arm: 20,000 (published range about 18,000-21,000)."""

FOURMOST_LR_RESOLVING_POWER = LinearResolvingPower(3700.0, 9500.0, 4000.0, 7500.0)
r"""Adopted LRS resolving power: linear from 4000 at 3700 A to 7500 at 9500 A.

An approximation of the published range (ESO: :math:`R \approx 4000-7500`, and
:math:`R > 4000-7800` in the baseline table): the real resolving power differs between the three
LRS arms and has jumps where they join.
"""


def _resample_segment(seg: GridSegment, step: float) -> GridSegment:
    """Same start, new step, last center at or below the old one."""
    n = math.floor((seg.stop - seg.start) / step + 1e-9)
    if n < 1:
        raise ValueError(f"step {step} A is too coarse for segment {seg.name!r}")
    return GridSegment(seg.name, seg.start, round(seg.start + n * step, 9), step)


def fourmost_setup(name: Literal["hr", "lr"], step: float | None = None) -> InstrumentSetup:
    r"""The 4MOST high- or low-resolution setup, optionally on a coarser (or finer) pixel grid.

    Parameters
    ----------
    name : {"hr", "lr"}
        Instrument mode (case-insensitive): ``"hr"`` has three segments HB, HG, HR with
        :math:`R = 20\,000` each; ``"lr"`` has one segment LJ with `FOURMOST_LR_RESOLVING_POWER`.
    step : float, optional
        Pixel width in Angstrom. Default: the delivered sampling (0.05 A for HR, 0.25 A for LR).
        Small models can use e.g. 0.1 A (HR) or 0.5 A (LR). Each segment keeps its first pixel
        center; its last one is the last whole step not beyond the delivered range.

    Returns
    -------
    `InstrumentSetup`
        Named ``"4MOST-HR"`` or ``"4MOST-LR"``; the grid is in air.

    Raises
    ------
    ValueError
        If ``name`` is unknown or ``step`` is not a positive number small enough for the arms.

    Examples
    --------
    >>> from specutils_cinn.instruments import fourmost_setup
    >>> fourmost_setup("lr").grid.npix
    23201
    >>> [s.npix for s in fourmost_setup("hr", step=0.1).grid.segments]
    [4291, 5701, 6901]
    """
    key = str(name).lower()
    if key == "hr":
        grid, rp = FOURMOST_HR, dict(FOURMOST_HR_RESOLVING_POWER)
    elif key == "lr":
        grid, rp = FOURMOST_LR, {"LJ": FOURMOST_LR_RESOLVING_POWER}
    else:
        raise ValueError(f"unknown 4MOST setup {name!r}; use 'hr' or 'lr'")
    if step is not None:
        try:
            s = float(step)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"step must be a positive number of Angstrom, got {step!r}") from exc
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"step must be a positive number of Angstrom, got {step!r}")
        grid = WavelengthGrid(tuple(_resample_segment(g, s) for g in grid.segments), grid.medium)
    return InstrumentSetup(f"4MOST-{key.upper()}", grid, rp)
