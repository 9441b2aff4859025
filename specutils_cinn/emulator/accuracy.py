"""Accuracy of an emulator against reference spectra (e.g. held-out Turbospectrum stars)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .network import SpectrumEmulator

__all__ = ["pixel_error", "residual_statistics"]


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


def pixel_error(
    residuals: np.ndarray, grid: Any, *, smooth: int = 5, floor: float = 1e-3
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

    Returns
    -------
    numpy.ndarray, shape ``[npix]``
        float32, at least ``floor``.
    """
    if smooth < 1 or smooth % 2 == 0:
        raise ValueError(f"smooth must be a positive odd number, got {smooth!r}")
    ms = np.nanmean(np.asarray(residuals, dtype=np.float64) ** 2, axis=0)
    out = np.empty_like(ms)
    kern = np.ones(smooth) / smooth
    for sl in grid.segment_slices:
        pad = np.pad(ms[sl], smooth // 2, mode="edge")
        out[sl] = np.convolve(pad, kern, mode="valid")
    return np.maximum(np.sqrt(out), floor).astype(np.float32)
