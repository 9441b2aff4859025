"""A model's mask of poorly modeled pixels: wavelength intervals that no spectrum is judged on.

A `PixelMask` is a short list of wavelength intervals (air Angstrom, half-open
``[start, stop)``) with their provenance (how they were derived, the threshold, which spectra,
the date, the package version). It does not depend on a pixel grid: `PixelMask.on_grid` gives
the masked pixels of any `~specutils_cinn.wavelength_grid.WavelengthGrid`. A model carries its
mask in its metadata (`~specutils_cinn.model.ModelMetadata.pixel_mask`, the JSON of `to_dict`);
the masks the package derives are ECSV files (`PixelMask.read`, `PixelMask.write`) under
``specutils_cinn/data/masks``.

`mask_pixels` is the one place where a mask is applied: the estimator's input preparation
(`~specutils_cinn.inputs.prepare_spectra` with ``pixel_mask``) and the training augmentation
(`~specutils_cinn.training.augment_batch`) both call it, so a masked pixel is treated alike in
training and inference, exactly like a pixel the user masked.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from astropy import units as u
from astropy.table import Table

from ..wavelength_grid import WavelengthGrid

__all__ = ["PixelMask", "mask_pixels"]

MaskT = TypeVar("MaskT")


@dataclass(frozen=True)
class PixelMask:
    """Wavelength intervals of poorly modeled pixels, with their provenance.

    Parameters
    ----------
    intervals : sequence of (float, float)
        ``(start, stop)`` pairs in air Angstrom, each the half-open interval ``[start, stop)``.
        Normalized on construction: sorted by ``start``, and intervals that overlap or touch
        (``stop`` of one >= ``start`` of the next) merged into one. Rejected with a
        `ValueError`: a pair that is not two finite numbers, a non-positive ``start``, and an
        empty or reversed interval (``stop <= start``). An empty sequence is a valid mask
        that masks nothing.
    provenance : mapping, optional
        JSON-serializable description of how the intervals were derived (method, threshold,
        spectra, date, package version, ...). Stored as given.

    Raises
    ------
    ValueError
        If an interval or the provenance is invalid (see above).

    Notes
    -----
    A pixel is masked when its **center** lies inside an interval (``start <= center <
    stop``), whatever the pixel's width: a mask derived on a grid, with intervals from the left
    edge of the first to the right edge of the last poorly modeled pixel of each run, gives
    back exactly those pixels on that grid, and on another grid the pixels whose centers fall
    in the same wavelength ranges. For a grid in vacuum wavelengths the interval ends are
    converted from air (`~specutils.utils.wcs_utils.air_to_vac`).

    Examples
    --------
    >>> from specutils_cinn.inputs import PixelMask
    >>> from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid
    >>> mask = PixelMask([(5001.0, 5002.0), (5000.0, 5001.5)], {"method": "by hand"})
    >>> mask.intervals
    ((5000.0, 5002.0),)
    >>> grid = WavelengthGrid((GridSegment("A", 4999.0, 5003.0, 0.5),))
    >>> mask.on_grid(grid).nonzero()[0].tolist()
    [2, 3, 4, 5]
    """

    intervals: tuple[tuple[float, float], ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "intervals", _normalized_intervals(self.intervals))
        prov = self.provenance
        if not isinstance(prov, Mapping):
            raise ValueError(f"pixel mask provenance must be a mapping, got {prov!r}")
        try:
            prov = json.loads(json.dumps(dict(prov), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"pixel mask provenance must be JSON-serializable: {exc}") from None
        object.__setattr__(self, "provenance", prov)

    # ------------------------------------------------------------------ description
    @property
    def n_intervals(self) -> int:
        """Number of intervals."""
        return len(self.intervals)

    @property
    def total_width(self) -> float:
        """Summed width of the intervals, in Angstrom."""
        return float(sum(b - a for a, b in self.intervals))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PixelMask):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    # ------------------------------------------------------------------ pixels
    def on_grid(self, grid: WavelengthGrid) -> np.ndarray:
        """The masked pixels of a grid.

        Parameters
        ----------
        grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
            The pixel grid.

        Returns
        -------
        numpy.ndarray
            Boolean, shape ``(grid.npix,)``: True where the pixel center lies in an interval.

        Raises
        ------
        TypeError
            If ``grid`` is not a `~specutils_cinn.wavelength_grid.WavelengthGrid`.
        """
        if not isinstance(grid, WavelengthGrid):
            raise TypeError(f"grid must be a WavelengthGrid, got {type(grid).__name__}")
        centers = grid.wavelength.to_value(u.AA)
        if not self.intervals:
            return np.zeros(centers.shape, dtype=bool)
        ends = np.asarray(self.intervals, dtype=np.float64)
        if grid.medium == "vacuum":
            from specutils.utils.wcs_utils import air_to_vac

            ends = air_to_vac(ends * u.AA).to_value(u.AA)
        k = np.searchsorted(ends[:, 0], centers, side="right") - 1
        inside = k >= 0
        inside[inside] = centers[inside] < ends[k[inside], 1]
        return inside

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored in model metadata.

        Returns
        -------
        dict
            ``{"intervals": [[start, stop], ...], "provenance": {...}}`` (a fresh copy).
        """
        return {"intervals": [[a, b] for a, b in self.intervals],
                "provenance": json.loads(json.dumps(self.provenance))}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PixelMask:
        """Build from the output of `to_dict`.

        Parameters
        ----------
        d : mapping
            ``intervals`` (a list of ``[start, stop]``) and optionally ``provenance``.

        Returns
        -------
        PixelMask

        Raises
        ------
        ValueError
            If a key is missing or unknown, or a value is invalid.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"a pixel mask must be an object, got {d!r}")
        unknown = sorted(set(d) - {"intervals", "provenance"})
        if unknown:
            raise ValueError(f"unknown pixel mask key(s) {unknown}; expected 'intervals' "
                             "and 'provenance'")
        if "intervals" not in d:
            raise ValueError("a pixel mask needs 'intervals'")
        return cls(d["intervals"], d.get("provenance", {}))

    # ------------------------------------------------------------------ ECSV
    def write(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write the mask as an ECSV table: columns ``start``, ``stop`` (Angstrom), meta the
        provenance.

        Parameters
        ----------
        path : path-like
            The ``.ecsv`` file.
        overwrite : bool, optional
            Replace an existing file.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        path = Path(path)
        ends = np.asarray(self.intervals, dtype=np.float64).reshape(-1, 2)
        table = Table(
            [ends[:, 0] * u.AA, ends[:, 1] * u.AA],
            names=("start", "stop"),
            meta=dict(self.provenance),
        )
        table["start"].description = "first wavelength masked (air, inclusive)"
        table["stop"].description = "end of the masked interval (air, exclusive)"
        table.write(path, format="ascii.ecsv", overwrite=overwrite)
        return path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> PixelMask:
        """Read a mask written by `write`.

        Parameters
        ----------
        path : path-like
            The ``.ecsv`` file: columns ``start`` and ``stop`` (a wavelength unit, Angstrom if
            none), one row per interval; its meta is the provenance.

        Returns
        -------
        PixelMask

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If it is not such a table or an interval is invalid (the file is named).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pixel mask file {path} does not exist")
        try:
            table = Table.read(path, format="ascii.ecsv")
            missing = [c for c in ("start", "stop") if c not in table.colnames]
            if missing:
                raise ValueError(f"missing column(s) {missing}")
            ends = [_angstrom(table[c]) for c in ("start", "stop")]
            provenance = json.loads(json.dumps(dict(table.meta), default=_plain))
            return cls(tuple(zip(ends[0].tolist(), ends[1].tolist(), strict=True)), provenance)
        except ValueError as exc:
            raise ValueError(f"{path}: not a pixel mask: {exc}") from exc


def mask_pixels(valid: MaskT, masked: Any | None) -> MaskT:
    """Remove a model's masked pixels from validity masks: ``valid & ~masked``.

    The one function that applies a `PixelMask`, in inference
    (`~specutils_cinn.inputs.prepare_spectra`, before the continuum fit) and in training
    (`~specutils_cinn.training.augment_batch`), so that a masked pixel is treated exactly like
    a pixel without data in both.

    Parameters
    ----------
    valid : numpy.ndarray or torch.Tensor
        Boolean, shape ``(..., npix)``: usable pixels.
    masked : numpy.ndarray, torch.Tensor or None
        Boolean, shape ``(npix,)`` (broadcast over the leading axes), of the same kind and on
        the same device as ``valid``: True for masked pixels (`PixelMask.on_grid`). None masks
        nothing.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        A new mask (``valid`` itself when ``masked`` is None).

    Raises
    ------
    ValueError
        If the last axes differ in length.
    """
    if masked is None:
        return valid
    if masked.shape[-1:] != valid.shape[-1:]:
        raise ValueError(f"the pixel mask has {masked.shape[-1]} pixels, the spectra "
                         f"{valid.shape[-1]}")
    return valid & ~masked


# ------------------------------------------------------------------ helpers
def _normalized_intervals(intervals: Any) -> tuple[tuple[float, float], ...]:
    """Checked, sorted and merged intervals (see `PixelMask`)."""
    if isinstance(intervals, (str, bytes)) or not isinstance(intervals, Sequence | np.ndarray):
        raise ValueError(f"pixel mask intervals must be a list of (start, stop), got "
                         f"{intervals!r}")
    pairs = []
    for i, pair in enumerate(intervals):
        if (isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence | np.ndarray)
                or len(pair) != 2):
            raise ValueError(f"pixel mask interval {i}: expected (start, stop), got {pair!r}")
        start, stop = (_finite(x, f"pixel mask interval {i}") for x in pair)
        if start <= 0:
            raise ValueError(f"pixel mask interval {i}: start must be positive, got {start}")
        if stop <= start:
            raise ValueError(f"pixel mask interval {i}: [{start}, {stop}) is empty or reversed "
                             "(stop must be above start)")
        pairs.append((start, stop))
    pairs.sort()
    merged: list[tuple[float, float]] = []
    for start, stop in pairs:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return tuple(merged)


def _finite(x: Any, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: expected numbers, got {x!r}")
    out = float(x)
    if not math.isfinite(out):
        raise ValueError(f"{where}: expected finite numbers, got {x!r}")
    return out


def _angstrom(column: Any) -> np.ndarray:
    unit = getattr(column, "unit", None)
    values = np.asarray(column, dtype=np.float64)
    if unit is None:
        return values
    return (values * unit).to_value(u.AA, equivalencies=u.spectral())


def _plain(obj: Any) -> Any:
    """JSON fallback for what an ECSV header may hold (numpy scalars and arrays)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serializable: {obj!r}")
