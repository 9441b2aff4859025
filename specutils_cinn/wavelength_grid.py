"""The wavelength grid a model works on: one or more linear segments."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from astropy import units as u

__all__ = ["GridSegment", "WavelengthGrid", "crop_grid", "pixel_map"]

Medium = Literal["air", "vacuum"]


@dataclass(frozen=True)
class GridSegment:
    """A linear wavelength segment with pixel centers ``start, start + step, ..., stop``.

    Parameters
    ----------
    name : str
        Segment (spectrograph arm) name, e.g. ``"HB"``.
    start, stop, step : float
        First and last pixel center and pixel width, in Angstrom.
    """

    name: str
    start: float
    stop: float
    step: float

    def __post_init__(self) -> None:
        if not (self.step > 0 and self.stop > self.start):
            raise ValueError(
                f"segment {self.name!r}: need step > 0 and stop > start, got "
                f"start={self.start}, stop={self.stop}, step={self.step}"
            )

    @property
    def npix(self) -> int:
        """Number of pixels in the segment."""
        return int(round((self.stop - self.start) / self.step)) + 1

    @property
    def centers(self) -> np.ndarray:
        """Pixel centers in Angstrom (float64)."""
        return self.start + self.step * np.arange(self.npix)

    @property
    def centres(self) -> np.ndarray:
        """The same as `centers` (the British spelling, kept for one release)."""
        return self.centers

    @property
    def edges(self) -> np.ndarray:
        """Pixel edges in Angstrom (``npix + 1`` values)."""
        return self.start + self.step * (np.arange(self.npix + 1) - 0.5)


@dataclass(frozen=True)
class WavelengthGrid:
    """The pixel grid of a model's input, in Angstrom, made of linear segments.

    Parameters
    ----------
    segments : tuple of GridSegment
        Non-overlapping segments in increasing wavelength order. Segments are never
        stitched together: pixels between them do not exist.
    medium : {"air", "vacuum"}
        Whether the wavelengths are in air or in vacuum.
    """

    segments: tuple[GridSegment, ...]
    medium: Medium = "air"

    def __post_init__(self) -> None:
        if self.medium not in ("air", "vacuum"):
            raise ValueError(f"medium must be 'air' or 'vacuum', got {self.medium!r}")
        if not self.segments:
            raise ValueError("a wavelength grid needs at least one segment")
        for a, b in zip(self.segments[:-1], self.segments[1:], strict=True):
            if b.start - 0.5 * b.step < a.stop + 0.5 * a.step:
                raise ValueError(f"segments {a.name!r} and {b.name!r} overlap or are unordered")

    @property
    def npix(self) -> int:
        """Total number of pixels over all segments."""
        return sum(s.npix for s in self.segments)

    @property
    def wavelength(self) -> u.Quantity:
        """Pixel centers of all segments, concatenated, as a Quantity in Angstrom."""
        return np.concatenate([s.centers for s in self.segments]) * u.AA

    @property
    def pixel_width(self) -> np.ndarray:
        """Width of every pixel in Angstrom (float64, length ``npix``)."""
        return np.concatenate([np.full(s.npix, s.step) for s in self.segments])

    @property
    def segment_index(self) -> np.ndarray:
        """Number of the segment of every pixel (int64, length ``npix``, from 0)."""
        return np.repeat(np.arange(len(self.segments)), [s.npix for s in self.segments])

    @property
    def segment_slices(self) -> list[slice]:
        """Slices of the concatenated pixel axis belonging to each segment."""
        out, i = [], 0
        for s in self.segments:
            out.append(slice(i, i + s.npix))
            i += s.npix
        return out

    @property
    def wavelength_range(self) -> tuple[float, float]:
        """Outer edges of the grid in Angstrom."""
        first, last = self.segments[0], self.segments[-1]
        return first.start - 0.5 * first.step, last.stop + 0.5 * last.step

    def pixels_within(self, centers: Any, half_width: float) -> np.ndarray:
        """Indices of the pixels whose centers lie within ``half_width`` of any of ``centers``.

        Parameters
        ----------
        centers : array-like of float
            Wavelengths in Angstrom, in the grid's medium.
        half_width : float
            Half-width of each window in Angstrom (positive).

        Returns
        -------
        numpy.ndarray
            Sorted distinct pixel indices (int64); windows outside the grid add none.

        Raises
        ------
        ValueError
            If ``half_width`` is not positive or a center is not finite.
        """
        c = np.atleast_1d(np.asarray(centers, dtype=np.float64))
        if not (half_width > 0) or not np.all(np.isfinite(c)):
            raise ValueError(f"need finite centers and half_width > 0, got {half_width!r}")
        wl = self.wavelength.to_value(u.AA)
        near = np.zeros(wl.size, bool)
        for x in c:
            near |= np.abs(wl - x) <= half_width
        return np.flatnonzero(near).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable description (used in model metadata)."""
        return {
            "medium": self.medium,
            "unit": "Angstrom",
            "segments": [
                {"name": s.name, "start": s.start, "stop": s.stop, "step": s.step}
                for s in self.segments
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WavelengthGrid:
        """Build a grid from the output of `to_dict`.

        Raises
        ------
        ValueError
            If a key is missing or the unit is not Angstrom.
        """
        try:
            if d.get("unit", "Angstrom") != "Angstrom":
                raise ValueError(f"wavelength grid unit must be 'Angstrom', got {d['unit']!r}")
            segs = tuple(
                GridSegment(str(s["name"]), float(s["start"]), float(s["stop"]), float(s["step"]))
                for s in d["segments"]
            )
            return cls(segs, d["medium"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed wavelength grid description: {exc!r}") from exc


def pixel_map(model_grid: WavelengthGrid, other: WavelengthGrid) -> tuple[np.ndarray, np.ndarray]:
    """Pixels two wavelength grids have in common (centers equal to 1e-3 of a pixel).

    Parameters
    ----------
    model_grid, other : WavelengthGrid
        The grids; pixels match when their centers agree within 0.001 of the pixel width
        and the widths are equal.

    Returns
    -------
    model_index, other_index : numpy.ndarray
        Increasing int64 indices into the concatenated pixel axes of the two grids.
    """
    mi, oi = [], []
    for ms, msl in zip(model_grid.segments, model_grid.segment_slices, strict=True):
        for os_, osl in zip(other.segments, other.segment_slices, strict=True):
            if not math.isclose(ms.step, os_.step, rel_tol=1e-6):
                continue
            j = np.round((ms.centers - os_.start) / os_.step)
            ok = (j >= 0) & (j < os_.npix)
            ok &= np.abs(ms.centers - (os_.start + j * os_.step)) < 1e-3 * ms.step
            mi.append(msl.start + np.flatnonzero(ok))
            oi.append(osl.start + j[ok].astype(np.int64))
    if not mi:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m, o = np.concatenate(mi), np.concatenate(oi)
    order = np.argsort(m, kind="stable")
    return m[order].astype(np.int64), o[order].astype(np.int64)


def crop_grid(
    grid: WavelengthGrid, segments: Sequence[str] | None, wavelength_range: Sequence[float] | None
) -> tuple[WavelengthGrid, np.ndarray]:
    """A sub-grid of ``grid``: some of its segments, and the pixel centers inside a range.

    Parameters
    ----------
    grid : WavelengthGrid
        The grid to crop.
    segments : sequence of str or None
        Names of the segments to keep (None: all).
    wavelength_range : (float, float) or None
        Pixel centers kept, in Angstrom, inclusive (None: all). A segment left with fewer than
        two pixels is dropped.

    Returns
    -------
    grid : WavelengthGrid
        The cropped grid (same medium and steps).
    pixels : numpy.ndarray
        Indices into ``grid`` of its pixels, in order.

    Raises
    ------
    ValueError
        If a segment name is unknown or no pixel is left.
    """
    names = [s.name for s in grid.segments]
    if segments is not None:
        unknown = sorted(set(segments) - set(names))
        if unknown:
            raise ValueError(f"unknown segment(s) {unknown}; the emulator grid has {names}")
    lo, hi = (-math.inf, math.inf) if wavelength_range is None else map(float, wavelength_range)
    segs, keep = [], []
    for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
        if segments is not None and seg.name not in segments:
            continue
        c = seg.centers
        inside = np.flatnonzero((c >= lo) & (c <= hi))
        if inside.size < 2:
            continue
        segs.append(GridSegment(seg.name, round(float(c[inside[0]]), 9),
                                round(float(c[inside[-1]]), 9), seg.step))
        keep.append(sl.start + inside)
    if not segs:
        raise ValueError("the model grid selection leaves no pixels")
    return WavelengthGrid(tuple(segs), grid.medium), np.concatenate(keep)
