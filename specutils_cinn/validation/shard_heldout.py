"""Held-out stars of a v2 grid (a folder of shards) on a model's grid.

The shards (`specutils_cinn.synthesis.shards`) hold every star of the v2 grid already convolved
with the 4MOST line-spread function and binned at the setup's native pixels, before rotation.
`shard_heldout_fields` turns the held-out stars of such a folder into the fields of a
`specutils_cinn.validation.heldout.HeldOut` for a model (``heldout_from_grid`` calls it when its
``path`` is a folder):

1. The setup is the 4MOST setup whose segments hold all of the model's grid segments
   (`shard_setup_name`: HB, HG, HR -> ``"hr"``; LJ -> ``"lr"``); the model's resolving power
   must be the setup's.
2. Every model pixel is taken from the shard pixel whose center is within `PIXEL_TOLERANCE` of
   it (`shard_pixel_index`): the model grid may be any crop of the setup's grid (a subset of
   the arms, a wavelength range), but not a resampling of it.
3. The binned spectra are rotated, on the setup's full segments, with
   `~specutils_cinn.instruments.rotation.BinnedRotation` (the training simulator's method),
   with v sin i drawn uniformly in the model's range and, if the model's training simulator
   drew radial-tangential macroturbulence
   (`~specutils_cinn.fit_check.macroturbulence_range`), a macroturbulence drawn
   uniformly in the simulator's range.

A binned spectrum cannot be made sharper, so the result's ``rerender`` only goes to lower
resolving powers: `lower_resolution` convolves the binned spectrum with a Gaussian of the
quadrature difference of the two resolving powers (the line-spread function is Gaussian, and
convolutions commute with the pixel box).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from astropy import units as u

from ..fit_check import macroturbulence_range
from ..instruments import InstrumentSetup, fourmost_setup, gaussian_lsf_broaden
from ..instruments.rotation import BinnedRotation
from ..wavelength_grid import GridSegment, WavelengthGrid
from .report import quadrature_resolving_power

if TYPE_CHECKING:
    from ..estimator import CINNParameterEstimator

__all__ = [
    "PIXEL_TOLERANCE",
    "draw_vsini",
    "grid_source",
    "heldout_stars",
    "lower_resolution",
    "shard_heldout_fields",
    "shard_pixel_index",
    "shard_setup_name",
]

#: Largest difference in Angstrom between a model pixel center and its shard pixel center.
PIXEL_TOLERANCE = 1e-6
#: Spectra rotated at a time (bounds the memory of the full-resolution intermediate).
_CHUNK = 64


def grid_source(path: str | Path) -> str:
    """A short record of the grid a held-out set was read from (for reports and provenance).

    Parameters
    ----------
    path : str or pathlib.Path
        A synthesis grid file, or a folder of v2 grid shards.

    Returns
    -------
    str
        The file name; for a folder, its name and the shard files present (the folder grows
        while the grid is computed), e.g. ``"4most-lte-v2 (v2 grid shards: 12 files,
        shard_00000.h5-shard_00011.h5)"``.
    """
    path = Path(path)
    if not path.is_dir():
        return path.name
    files = sorted(p.name for p in path.glob("shard_*.h5"))
    span = f"{files[0]}-{files[-1]}" if files else "none"
    return f"{path.name} (v2 grid shards: {len(files)} files, {span})"


def shard_setup_name(grid: WavelengthGrid) -> str:
    """The 4MOST setup whose shard spectra hold a model grid's segments.

    Parameters
    ----------
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        The model's grid.

    Returns
    -------
    {"hr", "lr"}
        The setup whose segment names (`~specutils_cinn.instruments.fourmost_setup`: HB, HG,
        HR for ``"hr"``, LJ for ``"lr"``) include every segment name of ``grid``.

    Raises
    ------
    ValueError
        If no one setup has all of the grid's segments.
    """
    names = {s.name for s in grid.segments}
    for setup in ("hr", "lr"):
        if names <= {s.name for s in fourmost_setup(setup).grid.segments}:
            return setup
    raise ValueError(
        f"the model's grid segments {sorted(names)} are not segments of one 4MOST setup "
        "(HR: HB, HG, HR; LR: LJ), so the shards have no spectra for it")


def shard_pixel_index(source: WavelengthGrid, grid: WavelengthGrid) -> np.ndarray:
    """Where each pixel of a model grid is in a grid of shard pixels.

    Parameters
    ----------
    source : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        The shard pixels (segments named as the setup's).
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        The model grid: a crop of ``source`` (its segments or a wavelength range of them).

    Returns
    -------
    numpy.ndarray
        ``[grid.npix]`` indices into ``source``'s pixels.

    Raises
    ------
    ValueError
        If a model segment is not in ``source`` or a model pixel center is not within
        `PIXEL_TOLERANCE` of a pixel center of the same segment of ``source``.
    """
    src = {s.name: (s, sl) for s, sl in zip(source.segments, source.segment_slices, strict=True)}
    src_wave = source.wavelength.to_value(u.AA)
    model_wave = grid.wavelength.to_value(u.AA)
    out = np.empty(grid.npix, dtype=np.int64)
    for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
        if seg.name not in src:
            raise ValueError(f"the shards have no segment {seg.name!r}")
        s, ssl = src[seg.name]
        w = model_wave[sl]
        sw = src_wave[ssl]
        i = np.clip(np.rint((w - sw[0]) / s.step).astype(np.int64), 0, sw.size - 1)
        off = np.abs(sw[i] - w)
        bad = np.flatnonzero(off > PIXEL_TOLERANCE)
        if bad.size:
            raise ValueError(
                f"{bad.size} pixels of model segment {seg.name!r} are not shard pixels (first "
                f"at {w[bad[0]]:.6f} A, {off[bad[0]]:.2g} A from the nearest; the shards have "
                f"{sw[0]:.4f}-{sw[-1]:.4f} A in steps of {s.step:g} A)")
        out[sl] = ssl.start + i
    return out


def lower_resolution(flux: np.ndarray, grid: WavelengthGrid, resolving_power: Mapping[str, Any],
                     r_target: float) -> np.ndarray:
    """Binned spectra taken to a lower resolving power by an extra Gaussian.

    Parameters
    ----------
    flux : numpy.ndarray
        ``[n, grid.npix]`` spectra after a Gaussian line-spread function of
        ``resolving_power``, binned on ``grid``.
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        Their pixels; each segment is broadened separately.
    resolving_power : mapping of str to float or callable
        Resolving power of each segment (a constant or a function of wavelength).
    r_target : float
        The resolving power wanted, below ``resolving_power`` everywhere.

    Returns
    -------
    numpy.ndarray
        A copy, convolved per segment with a Gaussian of resolving power
        ``(1 / r_target**2 - 1 / R**2) ** -0.5``.

    Raises
    ------
    ValueError
        If ``r_target`` is not below a segment's resolving power.
    """
    out = np.array(flux, dtype=np.float64)
    wave = grid.wavelength.to_value(u.AA)
    for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
        r_eff = quadrature_resolving_power(r_target, resolving_power[seg.name])
        r_eff(wave[sl])  # raises if impossible
        out[:, sl] = gaussian_lsf_broaden(wave[sl], out[:, sl], r_eff)
    return out


def _resolving_power_at(r: Any, wave: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(r(wave) if callable(r) else r, dtype=float), wave.shape)


def _segment(name: str, wave: np.ndarray) -> GridSegment:
    """The grid segment of a shard segment's pixel centers (``first + step * arange(n)``)."""
    step = float((wave[-1] - wave[0]) / (wave.size - 1))
    seg = GridSegment(name, float(wave[0]), float(wave[-1]), step)
    if seg.npix != wave.size or not np.allclose(seg.centers, wave, rtol=0, atol=1e-9):
        raise ValueError(f"the shards' segment {name!r} is not evenly sampled")
    return seg


def heldout_stars(grid: Any, metadata: Any, which: str, source: Any
                  ) -> tuple[np.ndarray, str]:
    """Rows of a grid (file or shards) that test a model, and how to name them.

    Parameters
    ----------
    grid : `~specutils_cinn.synthesis.SynthesisGrid`
        The grid (``holdout`` and ``star_id``).
    metadata : `~specutils_cinn.model.ModelMetadata`
        The model's metadata (``training["validation_groups"]`` for ``"validation-groups"``).
    which : {"holdout", "validation-groups"}
        The grid's held-out stars (``star_id % 10 == 9``), or the stars whose ``star_id`` is
        one of the model's validation groups.
    source : path-like
        The grid's path, for the error message.

    Returns
    -------
    rows : numpy.ndarray
        Row indices of the grid.
    what : str
        A description of them.

    Raises
    ------
    ValueError
        If ``which`` is unknown or no star qualifies.
    """
    if which == "holdout":
        stars = np.flatnonzero(grid.holdout)
        what = "its ``holdout`` stars (``star_id % 10 == 9``)"
    elif which == "validation-groups":
        stars = np.flatnonzero(np.isin(grid.star_id, metadata.training["validation_groups"]))
        what = "the stars whose ``star_id`` is one of the model's validation groups"
    else:
        raise ValueError(f"which must be 'holdout' or 'validation-groups', got {which!r}")
    if stars.size == 0:
        raise ValueError(f"{source}: no held-out stars ({which})")
    return stars, what


def draw_vsini(metadata: Any, stars: np.ndarray, per_star: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, str]:
    """``per_star`` spectra of each star, each with a v sin i drawn in the model's range.

    Parameters
    ----------
    metadata : `~specutils_cinn.model.ModelMetadata`
        The model's metadata (its v sin i range; no rotation if it does not predict v sin i).
    stars : numpy.ndarray
        Grid rows.
    per_star : int
        Spectra per star.
    rng : numpy.random.Generator
        Source of the draws.

    Returns
    -------
    rows : numpy.ndarray
        ``stars`` each repeated ``per_star`` times.
    vsini : numpy.ndarray
        One v sin i per row (km/s).
    note : str
        How they were drawn.
    """
    rows = np.repeat(stars, per_star)
    params = metadata.parameter_names
    if "vsini" in params:
        lo, hi = metadata.ranges[params.index("vsini")]
        return (rows, rng.uniform(lo, hi, rows.size),
                f"v sin i drawn uniformly in {lo:.1f}-{hi:.1f} km/s, {per_star} per star")
    return rows, np.zeros(rows.size), "no rotation (the model does not predict v sin i)"


def shard_heldout_fields(
    est: CINNParameterEstimator, folder: str | Path, which: str, vsini_per_star: int, seed: int
) -> dict[str, Any]:
    """The held-out stars of a folder of shards, rotated on the model's grid.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
        The model's estimator.
    folder : str or pathlib.Path
        A folder of v2 grid shards (`~specutils_cinn.synthesis.shards.read_shards`).
    which : {"holdout", "validation-groups"}
        The grid's ``holdout`` stars (``star_id % 10 == 9``), or the stars whose ``star_id``
        is one of the model's ``validation_groups``.
    vsini_per_star : int
        Spectra per star, each with its own v sin i drawn uniformly in the model's range
        (none if the model does not predict v sin i) and, if the training simulator drew
        macroturbulence, its own macroturbulence drawn uniformly in that range.
    seed : int
        Seed of the draws (v sin i first, then macroturbulence).

    Returns
    -------
    dict
        The keyword arguments of `~specutils_cinn.validation.heldout.HeldOut`: ``flux``,
        ``truth``, ``star``, ``description``, ``rerender`` (lower resolving powers only, by
        `lower_resolution`), ``higher_resolution_possible=False`` and ``extra`` (the shards'
        labels the model does not predict, and ``vmacro`` if drawn).

    Raises
    ------
    ValueError
        If the model's grid is not a crop of one setup's shard pixels, its resolving power is
        not the setup's, there are no such stars, or the shards lack a label the model
        predicts.
    """
    from ..synthesis.shards import read_shards

    md = est.model.metadata
    name = shard_setup_name(md.grid)
    setup4 = fourmost_setup(name)
    model_setup = InstrumentSetup(md.full_name, md.grid, md.resolving_power)
    model_wave = md.grid.wavelength.to_value(u.AA)
    for seg, sl in zip(md.grid.segments, md.grid.segment_slices, strict=True):
        mine = _resolving_power_at(model_setup.resolving_power[seg.name], model_wave[sl])
        theirs = _resolving_power_at(setup4.resolving_power[seg.name], model_wave[sl])
        if not np.allclose(mine, theirs, rtol=1e-6):
            raise ValueError(
                f"the model's resolving power in segment {seg.name!r} ({mine.min():g}-"
                f"{mine.max():g}) is not the {setup4.name} setup's ({theirs.min():g}-"
                f"{theirs.max():g}) at which the shards are stored")
    grid = read_shards(folder, name)
    used = [s.name for s in setup4.grid.segments if s.name in {g.name for g in md.grid.segments}]
    source = WavelengthGrid(tuple(_segment(s, grid.segments[s][0]) for s in used),
                            md.grid.medium)
    index = shard_pixel_index(source, md.grid)
    stars, what = heldout_stars(grid, md, which, folder)
    rng = np.random.default_rng(seed)
    rows, vsini, vs_note = draw_vsini(md, stars, vsini_per_star, rng)
    params = md.parameter_names
    vm_range = macroturbulence_range(md)  # the record, else a predicted vmacro's range
    if vm_range is not None:
        vmacro = rng.uniform(vm_range[0], vm_range[1], rows.size)
        vm_note = (f"radial-tangential macroturbulence drawn uniformly in {vm_range[0]:g}-"
                   f"{vm_range[1]:g} km/s, as the model's training simulator did")
    else:
        vmacro = None
        vm_note = "no macroturbulence, as the model's training simulator drew none"
    truth = np.empty((rows.size, len(params)))
    for j, p in enumerate(params):
        if p == "vsini":
            truth[:, j] = vsini
        elif p == "vmacro" and vmacro is not None:
            truth[:, j] = vmacro
        elif p in grid.labels:
            truth[:, j] = grid.labels[p][rows]
        else:
            raise ValueError(f"{folder}: the shards have no label {p!r}")
    # only the held-out stars' pixels of the arms used (the grid holds every star)
    src_flux = np.concatenate([grid.segments[s][1][stars] for s in used], axis=1)
    local = np.repeat(np.arange(stars.size), vsini_per_star)
    rot = BinnedRotation(source, max_vsini=max(float(vsini.max(initial=0.0)), 1.0),
                         max_vmacro=0.0 if vmacro is None else max(float(vmacro.max()), 1.0))
    flux = np.empty((rows.size, md.grid.npix))
    with torch.no_grad():
        for start in range(0, rows.size, _CHUNK):
            sel = slice(start, start + _CHUNK)
            f = torch.from_numpy(np.asarray(src_flux[local[sel]], dtype=np.float64))
            out = rot(f, torch.from_numpy(vsini[sel]),
                      vmacro=None if vmacro is None else torch.from_numpy(vmacro[sel]))
            flux[sel] = out.numpy()[:, index]
    extra = {p: grid.labels[p][rows] for p in grid.labels if p not in params}
    if vmacro is not None and "vmacro" not in params:
        extra["vmacro"] = vmacro
    return {
        "flux": flux,
        "truth": truth,
        "star": np.asarray(grid.star_id)[rows],
        "description": (
            f"``{grid_source(folder)}``, the {setup4.name} spectra already convolved with the "
            "line-spread function and binned at the setup's native pixels: "
            f"{what}, taken onto the model's pixels and rotated here with "
            f"``instruments.rotation.BinnedRotation`` ({vs_note}; {vm_note})"
        ),
        "rerender": lambda sel, r: lower_resolution(flux[sel], md.grid,
                                                    model_setup.resolving_power, r),
        "higher_resolution_possible": False,
        "extra": extra,
    }
