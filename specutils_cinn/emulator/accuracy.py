"""Accuracy of an emulator against reference spectra (e.g. held-out Turbospectrum stars)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .network import SpectrumEmulator

__all__ = ["hat_weights", "pixel_error", "residual_statistics", "teff_nodes"]


def _stats(res: np.ndarray) -> dict[str, float]:
    a = np.abs(res.ravel())
    return {"median_abs": float(np.median(a)), "p99_abs": float(np.percentile(a, 99)),
            "max_abs": float(a.max()), "rms": float(np.sqrt(np.mean(a**2)))}


def residual_statistics(
    emu: SpectrumEmulator, labels: np.ndarray, flux: np.ndarray, *, clamp: bool = True
) -> dict[str, Any]:
    """Residuals ``emulated - reference`` in units of the continuum, over all pixels.

    Parameters
    ----------
    emu : SpectrumEmulator
        The emulator.
    labels : numpy.ndarray, shape ``[n, n_labels]``
        Labels of the reference spectra.
    flux : numpy.ndarray, shape ``[n, npix]``
        Reference spectra on ``emu.grid``.
    clamp : bool
        Clip labels to the training range (reference stars slightly outside it are still
        evaluated; their number is reported as ``n_outside``).

    Returns
    -------
    dict
        ``all`` and ``segments[name]``: ``median_abs``, ``p99_abs``, ``max_abs``, ``rms``;
        ``per_star_p99`` (list), ``n_stars``, ``n_outside``, and ``residuals`` (float32 array
        ``[n, npix]``).
    """
    lab = np.asarray(labels, dtype=np.float64)
    ref = np.asarray(flux, dtype=np.float32)
    lo, hi = emu.label_ranges[:, 0], emu.label_ranges[:, 1]
    outside = np.any((lab < lo) | (lab > hi), axis=1)
    with torch.no_grad():
        pred = emu(lab, clamp=clamp)
    res = pred - ref
    return {
        "all": _stats(res),
        "segments": {s.name: _stats(res[:, sl])
                     for s, sl in zip(emu.grid.segments, emu.grid.segment_slices, strict=True)},
        "per_star_p99": np.percentile(np.abs(res), 99, axis=1).tolist(),
        "n_stars": int(lab.shape[0]),
        "n_outside": int(outside.sum()),
        "residuals": res,
    }


def teff_nodes(nodes: Any, name: str = "teff_nodes") -> np.ndarray:
    """Teff nodes checked: at least two finite, strictly increasing values.

    Parameters
    ----------
    nodes : array-like
        The nodes (K).
    name : str, optional
        The argument's name in the error message.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(k,)``.

    Raises
    ------
    ValueError
        If they are not at least two strictly increasing finite values.
    """
    out = np.asarray(nodes, dtype=np.float64)
    if out.ndim != 1 or out.size < 2 or not np.all(np.isfinite(out)) \
            or not np.all(np.diff(out) > 0):
        raise ValueError(f"{name} must be at least two strictly increasing Teff values, got "
                         f"{np.ravel(out).tolist()}")
    return out


def hat_weights(values: Any, nodes: Any) -> torch.Tensor:
    """Weights of linear interpolation between nodes, one row per value.

    Row ``i`` holds the weights with which a quantity known at ``nodes`` is interpolated
    linearly to ``values[i]``: at most two neighboring entries are non-zero and each row sums
    to 1. Values outside the nodes take the end node's value (weight 1). Used for an
    emulator's error that depends on Teff: measured at Teff nodes with these weights
    (`pixel_error` with ``weights``) and interpolated to each training spectrum with the same
    weights.

    Parameters
    ----------
    values : array-like or `torch.Tensor`, shape ``[n]``
        Where to interpolate.
    nodes : array-like or `torch.Tensor`, shape ``[k]``
        Strictly increasing node positions.

    Returns
    -------
    `torch.Tensor`, shape ``[n, k]``
        float64, on the device of ``values`` if it is a tensor.
    """
    x = torch.as_tensor(values, dtype=torch.float64)
    t = torch.as_tensor(nodes, dtype=torch.float64, device=x.device)
    if x.ndim != 1 or t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"values and nodes must be 1-D and nodes non-empty, got shapes "
                         f"{tuple(x.shape)} and {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or (t.numel() > 1 and not bool((t[1:] > t[:-1]).all())):
        raise ValueError(f"nodes must be finite and strictly increasing, got {t.tolist()}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("values must be finite")
    k = t.numel()
    w = torch.zeros(x.numel(), k, dtype=torch.float64, device=x.device)
    if k == 1:
        return w + 1.0
    xc = x.clamp(t[0], t[-1])
    hi = torch.searchsorted(t, xc, right=True).clamp(1, k - 1)
    frac = (xc - t[hi - 1]) / (t[hi] - t[hi - 1])
    w.scatter_(1, (hi - 1)[:, None], (1.0 - frac)[:, None])
    w.scatter_add_(1, hi[:, None], frac[:, None])
    return w


def pixel_error(
    residuals: np.ndarray, grid: Any, *, smooth: int = 5, floor: float = 1e-3,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """An emulator's error per pixel: the RMS of residuals over spectra, smoothed.

    Parameters
    ----------
    residuals : numpy.ndarray, shape ``[n, npix]``
        Emulated minus reference spectra (e.g. ``residual_statistics(...)["residuals"]``) on
        ``grid``; NaN entries are ignored.
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        Their grid; the smoothing stays inside each segment.
    smooth : int
        The squared residuals are averaged over this many neighboring pixels (odd).
    floor : float
        Smallest value returned.
    weights : numpy.ndarray, shape ``[n]``, optional
        Non-negative weight of each spectrum in the mean of the squared residuals (e.g. a
        column of `hat_weights` of their Teff); default equal weights.

    Returns
    -------
    numpy.ndarray, shape ``[npix]``
        float32, at least ``floor``.
    """
    if smooth < 1 or smooth % 2 == 0:
        raise ValueError(f"smooth must be a positive odd number, got {smooth!r}")
    sq = np.asarray(residuals, dtype=np.float64) ** 2
    if weights is None:
        ms = np.nanmean(sq, axis=0)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != sq.shape[:1] or not np.all(np.isfinite(w) & (w >= 0)):
            raise ValueError(f"weights must be {sq.shape[0]} finite non-negative values, one "
                             f"per spectrum, got shape {w.shape}")
        ww = np.where(np.isnan(sq), 0.0, w[:, None])
        total = ww.sum(0)
        if not np.all(total > 0):
            raise ValueError("the weights leave pixels without any spectrum")
        ms = np.nansum(sq * ww, axis=0) / total
    out = np.empty_like(ms)
    kern = np.ones(smooth) / smooth
    for sl in grid.segment_slices:
        pad = np.pad(ms[sl], smooth // 2, mode="edge")
        out[sl] = np.convolve(pad, kern, mode="valid")
    return np.maximum(np.sqrt(out), floor).astype(np.float32)
