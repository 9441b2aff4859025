"""Join the separately delivered 4MOST HRS arms of one object into one spectrum."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from astropy import units as u
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from specutils import Spectrum, SpectrumList

from ._common import ARMS_HRS

_NO_VELOCITY = 0 * u.km / u.s

__all__ = ["group_arms", "join_arms"]


def group_arms(
    spectra: Iterable[Spectrum],
    *,
    arms: Sequence[str] = ARMS_HRS,
    key: str | Callable[[Spectrum], Any] = "group_id",
) -> SpectrumList:
    """Join the arms of each object's observation into one spectrum with one segment per arm.

    4MOST delivers the three HRS arms (``HB``, ``HG``, ``HR``) of an object as separate
    spectra. Spectra whose ``meta["arm"]`` is one of ``arms`` and that share
    ``meta["group_id"]`` (set by the ``4MOST-L1`` and ``4MOST-MEC`` readers) are joined with
    `join_arms`; all other spectra are passed through unchanged.

    Parameters
    ----------
    spectra : iterable of `~specutils.Spectrum`
        1-D spectra, e.g. a `~specutils.SpectrumList` read from several files.
    arms : sequence of str, optional
        The ``meta["arm"]`` values that are joined.
    key : str or callable, optional
        The ``meta`` key holding the group, or a function of a spectrum returning it (None:
        not grouped).

    Returns
    -------
    `~specutils.SpectrumList`
        One spectrum per group, at the position of the group's first member, and the other
        spectra in their order.

    Raises
    ------
    ValueError
        If a group holds the same arm twice, or its arms cannot be joined (see `join_arms`).
    """
    items = list(spectra)
    for s in items:
        if not isinstance(s, Spectrum):
            raise TypeError(f"group_arms needs Spectrum objects, got {type(s).__name__}")
    keyfn = key if callable(key) else (lambda s: s.meta.get(key))
    members: dict[Any, list[int]] = {}
    for i, s in enumerate(items):
        k = keyfn(s) if s.meta.get("arm") in arms and s.flux.ndim == 1 else None
        if k is not None:
            members.setdefault(k, []).append(i)
    out = SpectrumList()
    first = {idx[0]: k for k, idx in members.items()}
    grouped = {i for idx in members.values() if len(idx) > 1 for i in idx}
    for i, s in enumerate(items):
        if i in first and len(members[first[i]]) > 1:
            group = [items[j] for j in members[first[i]]]
            seen = [g.meta["arm"] for g in group]
            if len(set(seen)) != len(seen):
                raise ValueError(
                    f"group {first[i]!r} holds arms {seen}: each arm may appear once"
                )
            out.append(join_arms(group))
        elif i not in grouped:
            out.append(s)
    return out


def join_arms(spectra: Sequence[Spectrum]) -> Spectrum:
    """One spectrum from non-overlapping arms: their pixels side by side, never resampled.

    The arms are sorted by wavelength and concatenated; the spectral axis has a gap between
    arms, which `~specutils_cinn.CINNParameterEstimator` treats as missing data (each arm
    is a separate segment; nothing is interpolated across a gap).

    Parameters
    ----------
    spectra : sequence of `~specutils.Spectrum`
        1-D spectra whose wavelength ranges do not overlap.

    Returns
    -------
    `~specutils.Spectrum`
        Flux in the first arm's unit, an uncertainty if every arm has one (the arms' type if
        they share it, else variances), the arms' masks, and the first arm's ``meta``
        updated: ``arm`` (e.g. ``"HB+HG+HR"``), ``filename`` (the arms' names joined by
        ``+``), ``resolving_power`` (the lowest of the arms') and ``segments``: one dict per
        arm with ``arm``, ``start`` and ``stop`` (its pixels in the joined spectrum),
        ``wavelength_min``, ``wavelength_max``, ``resolving_power``, ``filename`` and
        ``meta`` (the arm's own ``meta``).

    Raises
    ------
    ValueError
        If an arm is not 1-D, arms overlap in wavelength, their units are not convertible,
        only some have an uncertainty, or they disagree on the medium or radial velocity.
    """
    return Spectrum(**_join_parts(spectra))


def _join_parts(spectra: Sequence[Any]) -> dict[str, Any]:
    """The arguments of the `~specutils.Spectrum` that `join_arms` returns.

    ``spectra`` may be anything with the attributes of a 1-D spectrum that `join_arms` uses
    (``flux``, ``spectral_axis``, ``uncertainty``, ``mask``, ``meta``), e.g. the arrays of
    `specutils_cinn.io.phase3.phase3_arrays`.
    """
    arms = list(spectra)
    if not arms:
        raise ValueError("no spectra to join")
    for s in arms:
        if s.flux.ndim != 1:
            raise ValueError(f"join_arms needs 1-D spectra, got flux of shape {s.flux.shape}")
    lo = [float(np.min(s.spectral_axis.to_value(u.AA, u.spectral()))) for s in arms]
    arms = [arms[i] for i in np.argsort(lo)]
    wunit, funit = arms[0].spectral_axis.unit, arms[0].flux.unit
    waves, fluxes = [], []
    for s in arms:
        w = s.spectral_axis.to_value(wunit, u.spectral())
        if len(w) > 1 and w[-1] < w[0]:
            raise ValueError("join_arms needs increasing spectral axes")
        waves.append(w)
        try:
            fluxes.append(_flux_value(s, funit))
        except u.UnitsError as exc:
            raise ValueError(f"cannot join flux in {s.flux.unit} with flux in {funit}") from exc
    for a, b, sa, sb in zip(waves[:-1], waves[1:], arms[:-1], arms[1:], strict=True):
        if a[-1] >= b[0]:
            raise ValueError(
                f"arms {sa.meta.get('arm')} and {sb.meta.get('arm')} overlap in wavelength: "
                "join_arms does not stitch spectra"
            )
    for name in ("medium",):
        values = {s.meta.get(name) for s in arms}
        if len(values) > 1:
            raise ValueError(f"arms disagree on meta[{name!r}]: {sorted(map(str, values))}")
    rv = {float(u.Quantity(getattr(s.spectral_axis, "radial_velocity", _NO_VELOCITY))
                .to_value(u.km / u.s)) for s in arms}  # fmt: skip
    if len(rv) > 1:
        raise ValueError("arms have different radial velocities")
    uncertainty = _join_uncertainty(arms, funit)
    masks = [np.zeros(len(w), bool) if s.mask is None else np.asarray(s.mask, bool)
             for s, w in zip(arms, waves, strict=True)]  # fmt: skip
    segments, start = [], 0
    for s, w in zip(arms, waves, strict=True):
        segments.append({
            "arm": s.meta.get("arm"),
            "start": start,
            "stop": start + len(w),
            "wavelength_min": w[0] * wunit,
            "wavelength_max": w[-1] * wunit,
            "resolving_power": s.meta.get("resolving_power"),
            "filename": s.meta.get("filename"),
            "meta": s.meta,
        })  # fmt: skip
        start += len(w)
    meta = dict(arms[0].meta)
    powers = [p for p in (s.meta.get("resolving_power") for s in arms) if p is not None]
    names = [str(s.meta.get("filename")) for s in arms if s.meta.get("filename")]
    meta.update(
        arm="+".join(str(s.meta.get("arm")) for s in arms),
        filename="+".join(dict.fromkeys(names)) or None,
        resolving_power=min(powers) if powers else None,
        segments=segments,
    )
    rv_value = rv.pop()
    return {
        "flux": np.concatenate(fluxes) * funit,
        "spectral_axis": np.concatenate(waves) * wunit,
        "uncertainty": uncertainty,
        "mask": np.concatenate(masks),
        "meta": meta,
        "radial_velocity": rv_value * u.km / u.s if rv_value else None,
    }


def _flux_value(s: Spectrum, funit: u.UnitBase) -> np.ndarray:
    """The flux in ``funit``; the spectral-density equivalency (slow to build) only when the
    units are not convertible without it (a convertible unit never uses it: same values)."""
    try:
        return s.flux.to_value(funit)
    except u.UnitsError:
        return s.flux.to_value(funit, u.spectral_density(s.spectral_axis))


def _join_uncertainty(arms: list[Spectrum], funit: u.UnitBase) -> Any:
    present = [s.uncertainty is not None for s in arms]
    if not any(present):
        return None
    if not all(present):
        raise ValueError("only some arms have an uncertainty: cannot join them")
    kinds = {type(s.uncertainty) for s in arms}
    powers = {StdDevUncertainty: 1, VarianceUncertainty: 2, InverseVariance: -2}
    kind = kinds.pop() if len(kinds) == 1 else None
    if kind in powers:
        power = powers[kind]
        unit = funit**power
        values = []
        for s in arms:
            unc_unit = s.uncertainty.unit or s.flux.unit**power
            q = u.Quantity(s.uncertainty.array, unc_unit)
            values.append(q.to_value(unit))
        return kind(np.concatenate(values), unit=unit)
    values = []
    for s in arms:
        var = s.uncertainty.represent_as(VarianceUncertainty)
        q = u.Quantity(var.array, var.unit or s.flux.unit**2)
        values.append(q.to_value(funit**2))
    return VarianceUncertainty(np.concatenate(values), unit=funit**2)
