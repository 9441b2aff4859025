"""Radial velocities by cross-correlation against a model's emulated spectrum.

`estimate_radial_velocity` prepares spectra on a model's grid in their observed frame
(continuum-normalized, the same way the estimator prepares them, but without a shift),
emulates a template with the model's spectrum emulator (by default at the solar-like
`DEFAULT_TEMPLATE_LABELS`), and finds for each spectrum the Doppler shift that minimizes

``chi2(v) = sum_i w_i (d_i - a D_i(v))**2``

over a velocity grid, where ``d = 1 - flux`` and ``D(v) = 1 - template`` shifted by ``v`` are
line depths, ``w = 1 / sigma**2`` on valid pixels and ``a >= 0`` is the best line-depth
scale in each grid segment (the template's lines may be stronger or weaker than the star's).
Both are resampled onto a uniform grid in ``ln(lambda)``, where a velocity is a shift by a
number of pixels, and ``chi2`` is evaluated at every shift at once with FFT correlations. A
parabola through the minimum and its two neighbors gives the velocity; its curvature gives
the uncertainty (``chi2`` rising by 1), scaled by ``sqrt(chi2 / dof)`` at the minimum, so that
template mismatch and underestimated noise widen it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from astropy import units as u
from scipy import fft as sp_fft

from .constants import C_KMS
from .inputs import prepare_spectra

__all__ = [
    "DEFAULT_TEMPLATE_LABELS",
    "DEFAULT_VELOCITY_RANGE",
    "RadialVelocities",
    "emulated_template",
    "estimate_radial_velocity",
    "velocity_of_prepared",
]

#: Labels of the default template (the Sun); parameters not listed are 0 (solar abundance
#: ratios). Values outside a model's training range are clipped to it.
DEFAULT_TEMPLATE_LABELS: dict[str, float] = {
    "teff": 5772.0,
    "logg": 4.44,
    "fe_h": 0.0,
    "vmic": 1.0,
    "vsini": 2.0,
    # radial-tangential zeta of the Sun (used only by models that predict vmacro)
    "vmacro": 3.5,
}
#: Velocities searched by default, km/s (Galactic stars, halo included).
DEFAULT_VELOCITY_RANGE = (-600.0, 600.0)
#: ln(lambda) pixels per model pixel (at the red end of the finest segment).
_OVERSAMPLE = 2
#: Fewest valid pixels (per spectrum) for an estimate.
_MIN_PIXELS = 50


@dataclass(frozen=True)
class RadialVelocities:
    """Result of `estimate_radial_velocity`, one value per spectrum (row).

    Parameters
    ----------
    rv : `~astropy.units.Quantity`
        Radial velocity (km/s, positive receding), relativistic:
        ``lambda_obs / lambda_rest = sqrt((1 + v/c) / (1 - v/c))``. NaN where no estimate
        was possible (too few valid pixels, or the best shift at the edge of the searched
        range).
    rv_err : `~astropy.units.Quantity`
        Its 1-sigma uncertainty (km/s) from the curvature of ``chi2`` at the minimum,
        scaled by ``sqrt(chi2_min / dof)`` when that exceeds 1; NaN with ``rv``.
    chi2_red : numpy.ndarray
        ``chi2`` per valid pixel at the best shift (template mismatch shows as values
        well above 1).
    significance : numpy.ndarray
        ``sqrt(chi2(no lines) - chi2_min)``: how many standard deviations the template's
        lines improve the fit at the best shift (below about 5: no reliable estimate).
    """

    rv: u.Quantity
    rv_err: u.Quantity
    chi2_red: np.ndarray
    significance: np.ndarray


def _model_of(estimator: Any) -> Any:
    return getattr(estimator, "model", estimator)


def _default_labels(model: Any) -> np.ndarray:
    md = model.metadata
    names = list(md.parameter_names)
    values = np.array([DEFAULT_TEMPLATE_LABELS.get(p, 0.0) for p in names], dtype=float)
    return np.clip(values, md.ranges[:, 0], md.ranges[:, 1])


def emulated_template(
    estimator: Any, labels: Mapping[str, float] | np.ndarray | None = None
) -> np.ndarray:
    """Normalized spectra emulated by a model's spectrum emulator, on the model's grid.

    Parameters
    ----------
    estimator : `~specutils_cinn.CINNParameterEstimator` or `~specutils_cinn.model.CINNModel`
        A model with a spectrum emulator.
    labels : mapping, array of shape ``(n_params,)`` or ``(N, n_params)``, optional
        Parameter values in the model's parameter order (or a mapping from parameter name to
        value; missing ones take `DEFAULT_TEMPLATE_LABELS` or 0). Default:
        `DEFAULT_TEMPLATE_LABELS` clipped to the training range.

    Notes
    -----
    The template is broadened as the fit check broadens its emulated spectra
    (`~specutils_cinn.fit_check.ModelEmulator.emulate`): rotated by the labels' v sin i
    (clipped to its training range) and, for a model trained with macroturbulence, broadened
    by the labels' ``vmacro`` or the training range's midpoint
    (`~specutils_cinn.fit_check.ModelEmulator.macroturbulence`).

    Returns
    -------
    numpy.ndarray
        Shape ``(N, npix)`` (``N = 1`` for one label set), float64, continuum 1; NaN at model
        pixels the emulator does not cover.

    Raises
    ------
    ValueError
        If the model has no spectrum emulator, or the labels have the wrong shape.
    """
    model = _model_of(estimator)
    fe = model.emulator
    if fe is None:
        raise ValueError(
            f"model {model.metadata.full_name!r} has no spectrum emulator: radial velocities "
            "cannot be estimated with it (give them as numbers instead)"
        )
    names = list(model.metadata.parameter_names)
    if labels is None:
        values = _default_labels(model)[None, :]
    elif isinstance(labels, Mapping):
        unknown = set(labels) - set(names)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not parameters of the model")
        base = dict(zip(names, _default_labels(model), strict=True))
        base.update({k: float(v) for k, v in labels.items()})
        values = np.array([[base[p] for p in names]])
    else:
        values = np.atleast_2d(np.asarray(labels, dtype=float))
        if values.ndim != 2 or values.shape[1] != len(names):
            raise ValueError(
                f"labels must have shape ({len(names)},) or (N, {len(names)}), got "
                f"{np.shape(labels)}"
            )
    top = None
    if "vsini" in names:
        top = float(model.metadata.ranges[names.index("vsini")][1])
    out = np.full((len(values), model.metadata.grid.npix), np.nan)
    with torch.inference_mode():  # where the emulator is (the estimator's device)
        flux = fe.emulate(names, values, vsini_max=top)
        out[:, fe.model_index] = flux[:, fe.emulator_index].to("cpu", torch.float64).numpy()
    return out


def _velocity(shift: np.ndarray, step: float) -> np.ndarray:
    """Relativistic velocity (km/s) of a shift of ``shift`` pixels of ``step`` in ln(lambda)."""
    f2 = np.exp(2.0 * shift * step)  # (1 + z)**2
    return C_KMS * (f2 - 1.0) / (f2 + 1.0)


def _correlate(a: np.ndarray, b: np.ndarray, max_lag: int) -> np.ndarray:
    """``out[:, k + max_lag] = sum_j a[:, j] * b[:, j - k]`` for ``|k| <= max_lag`` (FFT)."""
    n = a.shape[-1]
    # the shortest fast length (not the next power of two, up to twice as long), on the
    # threads torch is allowed
    size = sp_fft.next_fast_len(n + max_lag + 1, real=True)
    workers = torch.get_num_threads()
    fa = sp_fft.rfft(a, size, workers=workers)
    fb = sp_fft.rfft(b, size, workers=workers)
    # circular correlation: full[k mod size] = sum_j a[j] b[j - k]; the zero padding to
    # n + max_lag keeps wrapped terms out
    full = sp_fft.irfft(fa * np.conj(fb), size, workers=workers)
    lags = np.arange(-max_lag, max_lag + 1)
    return full[..., lags % size]


def estimate_radial_velocity(
    estimator: Any,
    spectra: Any,
    *,
    template: np.ndarray | Mapping[str, float] | None = None,
    velocity_range: tuple[float, float] | u.Quantity = DEFAULT_VELOCITY_RANGE,
    medium: str | None = None,
    snr: float | np.ndarray | str | None = None,
) -> RadialVelocities:
    """Radial velocity of each spectrum by cross-correlation with an emulated template.

    See the module description for the method. The spectra are taken in the frame of their
    spectral axis: a radial velocity already set on it is ignored (the result is the full
    shift from the rest frame).

    Parameters
    ----------
    estimator : `~specutils_cinn.CINNParameterEstimator`
        The estimator whose model (grid, normalization and spectrum emulator) is used.
    spectra : Spectrum, SpectrumCollection, SpectrumList, file path or list of them
        As for `~specutils_cinn.CINNParameterEstimator.predict`; one result per row.
    template : mapping, array of shape ``(n_params,)`` or ``(N, n_params)``, optional
        Labels of the template (see `emulated_template`): one for all spectra or one per
        spectrum, e.g. posterior medians of a first pass. Default: the Sun
        (`DEFAULT_TEMPLATE_LABELS`).
    velocity_range : (float, float) or `~astropy.units.Quantity`, optional
        Lowest and highest velocity searched (km/s if plain numbers).
    medium : {"air", "vacuum"}, optional
        Medium of the input wavelengths (default: from ``meta["medium"]``, else air).
    snr : float, array, "estimate" or None, optional
        As for `~specutils_cinn.CINNParameterEstimator.predict`, for spectra without
        uncertainties.

    Returns
    -------
    RadialVelocities
        ``rv``, ``rv_err`` (km/s), ``chi2_red`` and ``significance`` per row.

    Raises
    ------
    ValueError
        If the model has no spectrum emulator, or the velocity range is not increasing.

    Examples
    --------
    >>> from importlib import resources
    >>> from astropy import units as u
    >>> from specutils import Spectrum
    >>> from specutils_cinn import CINNParameterEstimator
    >>> from specutils_cinn.rv import estimate_radial_velocity
    >>> est = CINNParameterEstimator.from_pretrained()
    >>> path = resources.files("specutils_cinn") / "data" / "sun_4most_hr_example.fits"
    >>> sun = Spectrum.read(path, format="tabular-fits")
    >>> res = estimate_radial_velocity(est, sun)
    >>> bool(abs(res.rv[0]) < 2 * u.km / u.s)
    True
    """
    from .io import read_paths, spectra_medium

    model = _model_of(estimator)
    md = model.metadata
    lo, hi = u.Quantity(velocity_range, u.km / u.s).to_value(u.km / u.s)
    if not (np.isfinite(lo) and np.isfinite(hi) and -C_KMS < lo < hi < C_KMS):
        raise ValueError(f"velocity_range must be increasing and slower than light, got "
                         f"{velocity_range!r}")
    if template is None or isinstance(template, Mapping):
        tmpl = emulated_template(model, template)
    else:
        tmpl = emulated_template(model, np.asarray(template, dtype=float))
    spectra = read_paths(spectra)
    if medium is None:
        medium = spectra_medium(spectra)
    prepared = prepare_spectra(
        spectra, md.grid, radial_velocity=0.0 * u.km / u.s, medium=medium, snr=snr,
        pixel_mask=md.pixel_mask, **md.normalization.prepare_arguments("auto"),
    )
    return velocity_of_prepared(model, prepared, tmpl, (lo, hi))


def velocity_of_prepared(model: Any, prepared: Any, template: np.ndarray,
                         velocity_range: tuple[float, float], *,
                         oversample: int = _OVERSAMPLE) -> RadialVelocities:
    """The chi-square velocity search of `estimate_radial_velocity` on prepared spectra.

    Parameters
    ----------
    model : CINNModel
        The model whose grid the spectra are on.
    prepared : `~specutils_cinn.inputs.PreparedSpectra`
        Continuum-normalized spectra on the model's grid (in whatever frame they were
        prepared: the result is the velocity relative to that frame).
    template : numpy.ndarray
        ``(1 or N, npix)`` emulated template flux (`emulated_template`).
    velocity_range : (float, float)
        Lowest and highest velocity searched, km/s.
    oversample : int, optional
        ln(lambda) pixels per model pixel (at the red end of the finest segment); 1 is
        enough for a check at the 10 km/s level and twice as fast.

    Returns
    -------
    RadialVelocities
    """
    md = model.metadata
    tmpl = template
    lo, hi = velocity_range
    n = prepared.n_rows
    if tmpl.shape[0] not in (1, n):
        raise ValueError(f"template labels must be one set or one per spectrum ({n}), "
                         f"got {tmpl.shape[0]}")
    valid = prepared.valid & np.isfinite(tmpl).all(axis=0)[None, :]
    w = np.where(valid, 1.0 / np.square(prepared.sigma.astype(np.float64)), 0.0)
    d = np.where(valid, 1.0 - prepared.flux.astype(np.float64), 0.0)
    depth = 1.0 - np.nan_to_num(tmpl, nan=1.0)
    # one ln(lambda) step for all segments: a velocity is the same shift everywhere
    step = min(s.step / s.stop for s in md.grid.segments) / oversample
    max_lag = int(np.ceil(max(abs(np.log(_doppler(lo))), abs(np.log(_doppler(hi)))) / step)) + 1
    lags = np.arange(-max_lag, max_lag + 1)
    chi2 = np.zeros((n, lags.size))
    flat = np.zeros(n)
    npix = valid.sum(axis=1)
    wave = md.grid.wavelength.value
    for sl in md.grid.segment_slices:
        x = np.log(wave[sl])
        grid = np.arange(x[0], x[-1], step)
        pos = np.interp(grid, x, np.arange(x.size))
        left = np.floor(pos).astype(int)
        right = np.minimum(left + 1, x.size - 1)
        frac = pos - left
        # interpolate only between valid pixels: a weight of 0 next to an invalid pixel
        ws = np.where((w[:, sl][:, left] > 0) & (w[:, sl][:, right] > 0),
                      (1 - frac) * w[:, sl][:, left] + frac * w[:, sl][:, right], 0.0)
        ds = (1 - frac) * d[:, sl][:, left] + frac * d[:, sl][:, right]
        ts = (1 - frac) * depth[:, sl][:, left] + frac * depth[:, sl][:, right]
        # the resampled grid is denser than the pixels: count each pixel once in chi2
        ws = ws * (x.size / grid.size)
        e = (ws * ds * ds).sum(axis=1)  # chi2 of a featureless continuum
        # a template shared by all rows (shape (1, m)) is transformed once and broadcast
        c = _correlate(ws * ds, ts, max_lag)
        b = _correlate(ws, ts * ts, max_lag)
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.where(b > 0, np.square(np.clip(c, 0.0, None)) / b, 0.0)
        chi2 += e[:, None] - gain
        flat += e
    best = np.argmin(chi2, axis=1)
    inside = (best > 0) & (best < lags.size - 1) & (npix >= _MIN_PIXELS)
    rows = np.arange(n)
    b0 = np.clip(best, 1, lags.size - 2)
    ym, y0, yp = chi2[rows, b0 - 1], chi2[rows, b0], chi2[rows, b0 + 1]
    curv = ym - 2.0 * y0 + yp
    ok = inside & (curv > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = np.where(ok, 0.5 * (ym - yp) / curv, np.nan)
        shift = lags[b0] + offset
        chi2_min = y0 - 0.25 * (ym - yp) * offset
        dof = np.maximum(npix - 2, 1)
        red = chi2_min / dof
        sigma_pix = np.sqrt(2.0 / curv) * np.sqrt(np.maximum(red, 1.0))
        rv = _velocity(shift, step)
        dv_dpix = np.abs(_velocity(shift + 0.5, step) - _velocity(shift - 0.5, step))
        rv_err = sigma_pix * dv_dpix
        signif = np.sqrt(np.clip(flat - chi2_min, 0.0, None))
    rv = np.where(ok, rv, np.nan)
    rv_err = np.where(ok, rv_err, np.nan)
    return RadialVelocities(rv * (u.km / u.s), rv_err * (u.km / u.s),
                            np.where(ok, red, np.nan), np.where(ok, signif, np.nan))



def _doppler(v_kms: float) -> float:
    beta = v_kms / C_KMS
    return float(np.sqrt((1.0 + beta) / (1.0 - beta)))
