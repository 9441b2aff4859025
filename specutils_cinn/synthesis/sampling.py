"""How finely each star is sampled: the wavelength pieces of one synthesis.

Turbospectrum samples the emergent spectrum at the requested wavelengths; it does not integrate
over them, so a line narrower than about two samples loses part of its equivalent width once
the spectrum is convolved with a line-spread function. The step a star needs therefore scales
with the Doppler width of its narrowest lines (``python scripts/sampling_check.py``).

- `doppler_windows` cuts a window into pieces whose step follows the star's Doppler width.
- `padded_pieces` widens each piece by an overlap into its neighbors, on the piece's own
  sample positions: each piece is one ``bsyn`` run, and ``bsyn`` ignores lines more than 2 A
  outside its window (``xlmarg`` in Turbospectrum's ``input.f``), so without an overlap a
  piece misses the wings of lines just beyond its end.
- `join_pieces` trims the padded results back to their pieces and joins them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["doppler_windows", "join_pieces", "padded_pieces"]

#: Speed of light (km/s), the atomic mass unit (kg) and Boltzmann's constant (J/K).
_C_KMS = 299792.458
_AMU_KG = 1.66053907e-27
_K_B = 1.380649e-23


def doppler_windows(labels: Mapping[str, float], start: float, stop: float, max_step: float,
                    fraction: float, growth: float = 1.25) -> list[tuple[float, float, float]]:
    """Cut ``[start, stop]`` into pieces sampled as finely as the star's narrowest lines need.

    The step of a piece is ``fraction`` times the Doppler width at its blue end of an iron line
    at 0.7 Teff (the upper atmosphere) with the star's microturbulence,
    ``lambda sqrt(2 k T / m_Fe + vmic^2) / c``, at most ``max_step``; a piece ends where that
    width has grown by ``growth`` (near ``start * growth**k`` for every star).

    Parameters
    ----------
    labels : mapping
        ``teff`` (K) and ``vmic`` (km/s).
    start, stop, max_step : float
        The window (air Angstrom) and the largest step allowed.
    fraction : float
        Step in units of that Doppler width.
    growth : float
        Ratio of the wavelengths at the ends of a piece.

    Returns
    -------
    list of (start, stop, step)
        Contiguous, non-overlapping pieces covering the window (a piece starts one step after
        the previous one's last sample).

    Raises
    ------
    ValueError
        If a step would be finer than 0.001 A.
    """
    v_th = np.sqrt(2.0 * _K_B * 0.7 * float(labels["teff"]) / (55.845 * _AMU_KG)) / 1e3
    xi = float(np.hypot(v_th, float(labels["vmic"])))
    out: list[tuple[float, float, float]] = []
    lo = float(start)
    while lo < stop:
        step = min(float(max_step), fraction * lo * xi / _C_KMS)
        step = float(np.floor(step * 1e4) / 1e4)
        if step < 1e-3:
            raise ValueError(f"a step of {step:g} A at {lo:.0f} A is too fine for Turbospectrum "
                             f"(fraction {fraction}, max_step {max_step}); need >= 0.001 A")
        hi = min(float(stop), lo * growth)
        n = max(int(np.ceil((hi - lo) / step)), 1)
        hi = lo + n * step if hi < stop else float(stop)
        out.append((lo, hi, step))
        lo = hi + step
    return out


def padded_pieces(pieces: Sequence[tuple[float, float, float]], overlap: float,
                  bounds: tuple[float, float] | None = None
                  ) -> list[tuple[float, float, float]]:
    """Widen each piece by up to ``overlap`` Angstrom on its own sample positions.

    Parameters
    ----------
    pieces : sequence of (start, stop, step)
        From `doppler_windows`.
    overlap : float
        Angstrom added at each end (rounded down to whole steps; 0: the pieces as they are).
    bounds : (float, float), optional
        No piece is widened beyond these wavelengths (default: the ends of ``pieces``).

    Returns
    -------
    list of (start, stop, step)
        The windows to synthesize; `join_pieces` trims their results back to ``pieces``.

    Raises
    ------
    ValueError
        If ``overlap`` is negative.
    """
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if not pieces:
        return []
    lo_bound, hi_bound = bounds if bounds is not None else (pieces[0][0], pieces[-1][1])
    out = []
    for lo, hi, step in pieces:
        below = int(np.floor(max(min(overlap, lo - lo_bound), 0.0) / step + 1e-9))
        above = int(np.floor(max(min(overlap, hi_bound - hi), 0.0) / step + 1e-9))
        out.append((lo - below * step, hi + above * step, step))
    return out


def join_pieces(pieces: Sequence[tuple[float, float, float]],
                wavelength: Sequence[np.ndarray], flux: Sequence[np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Trim the spectra of padded pieces back to ``pieces`` and join them.

    Parameters
    ----------
    pieces : sequence of (start, stop, step)
        The unpadded pieces (`doppler_windows`).
    wavelength, flux : sequence of numpy.ndarray
        One spectrum per piece, synthesized on `padded_pieces` (or on ``pieces`` themselves).

    Returns
    -------
    wavelength, flux : numpy.ndarray
        The joined spectrum, strictly increasing in wavelength.

    Raises
    ------
    ValueError
        If the numbers of pieces and spectra differ, or a piece's spectrum does not cover it.
    """
    if not len(pieces) == len(wavelength) == len(flux):
        raise ValueError(f"{len(pieces)} pieces but {len(wavelength)} wavelength and "
                         f"{len(flux)} flux arrays")
    waves, fluxes = [], []
    for (lo, hi, step), w, f in zip(pieces, wavelength, flux, strict=True):
        w, f = np.asarray(w, dtype=float), np.asarray(f)
        keep = (w >= lo - 0.5 * step) & (w <= hi + 0.5 * step)
        if not keep.any() or w[keep][0] > lo + step or w[keep][-1] < hi - step:
            raise ValueError(f"the spectrum of piece {lo:.3f}-{hi:.3f} A does not cover it")
        waves.append(w[keep])
        fluxes.append(f[keep])
    wave, out = np.concatenate(waves), np.concatenate(fluxes)
    if np.any(np.diff(wave) <= 0):
        raise ValueError("the joined pieces are not strictly increasing in wavelength")
    return wave, out
