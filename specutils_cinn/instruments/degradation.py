r"""Turn high-resolution synthetic spectra into spectra as an instrument setup records them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from .._checks import per_spectrum
from ..constants import C_KMS
from ._utils import (
    KM_S,
    as_flux,
    as_wave,
    bin_average_rows,
    interp_rows,
    restore,
)
from .broadening import (
    _FWHM_PER_SIGMA,
    _PIX_PER_FWHM,
    _check_edge,
    _convolve_on,
    _default_step,
    _gaussian_kernel,
    _macro_kernel,
    _rotation_kernel,
    gaussian_lsf_broaden,
)
from .fourmost import InstrumentSetup

__all__ = ["bin_average", "degrade", "degrade_spectrum"]


def bin_average(wave: Any, flux: Any, edges: Any) -> Any:
    r"""Average spectra over pixel bins, conserving flux.

    The spectrum is taken as the piecewise-linear function through its samples, and each output
    pixel is its exact mean over the bin :math:`[e_k, e_{k+1}]`: a sparse linear map whose weights
    are computed in float64 and applied to the whole batch at once. The integral of the
    piecewise-linear function over the binned range is conserved.

    Parameters
    ----------
    wave : array-like, shape ``[npix]``
        Strictly increasing input wavelengths in Angstrom.
    flux : `torch.Tensor` or array-like, shape ``[n_spectra, npix]`` or ``[npix]``
        Spectra at ``wave``.
    edges : array-like, shape ``[n_out + 1]``
        Strictly increasing bin edges in Angstrom, inside ``[wave[0], wave[-1]]``.

    Returns
    -------
    binned : same type and dtype as ``flux``, shape ``[n_spectra, n_out]`` (or ``[n_out]``)

    Raises
    ------
    ValueError
        If the bins are not covered by ``wave``.
    """
    w = as_wave(wave)
    e = as_wave(edges, "edges")
    f, was_numpy, was_1d = as_flux(flux, w.size)
    tol = 1e-9 * w[-1]
    if e[0] < w[0] - tol or e[-1] > w[-1] + tol:
        raise ValueError(
            f"bins {e[0]:.4f}-{e[-1]:.4f} A are not covered by the input {w[0]:.4f}-{w[-1]:.4f} A"
        )
    return restore(bin_average_rows(w, f, e), was_numpy, was_1d)


def _effective_resolving_power(
    r: float | Callable[[np.ndarray], Any], r_in: float | None, segment: str
) -> float | Callable[[np.ndarray], np.ndarray]:
    """Resolving power still to apply to an input of resolving power ``r_in`` (quadrature)."""
    if r_in is None:
        return r

    def eff(w: np.ndarray) -> np.ndarray:
        rv = np.broadcast_to(np.asarray(r(w) if callable(r) else r, dtype=np.float64), w.shape)
        if np.any(rv >= r_in):
            raise ValueError(
                f"input_resolving_power ({r_in}) must exceed the resolving power of segment "
                f"{segment!r} (up to {float(np.max(rv))})"
            )
        return 1.0 / np.sqrt(1.0 / rv**2 - 1.0 / r_in**2)

    if callable(r):
        return eff
    return float(eff(np.array([1.0]))[0])


def degrade(
    wave: Any,
    flux: Any,
    setup: InstrumentSetup,
    *,
    vsini: Any = None,
    vmacro: Any = None,
    limb_darkening: float = 0.6,
    macroturbulence: Literal["radial-tangential", "gaussian"] = "radial-tangential",
    input_resolving_power: float | None = None,
    resample: Literal["bin", "linear"] = "bin",
    edge: Literal["nearest", "reflect"] = "nearest",
) -> Any:
    r"""Degrade high-resolution spectra to an instrument setup's resolution and pixel grid.

    For each grid segment separately (the arms of the 4MOST HR setup are never stitched), the
    input is cut to the segment plus a margin of a few kernel widths, optionally broadened by
    rotation (`~specutils_cinn.instruments.rotational_broaden`) and macroturbulence
    (`~specutils_cinn.instruments.macroturbulence_broaden`), convolved with the Gaussian
    line-spread function of the segment's resolving power
    (`~specutils_cinn.instruments.gaussian_lsf_broaden`), and averaged over the segment's pixels
    (`bin_average`). With a constant resolving power all kernels are applied in one FFT pass.

    Parameters
    ----------
    wave : array-like or `~astropy.units.Quantity`, shape ``[npix_in]``
        Strictly increasing wavelengths of the input (Angstrom unless a Quantity), in the same
        medium (air or vacuum) as ``setup.grid``. Must cover every segment of the grid.
    flux : `torch.Tensor` or array-like, shape ``[n_spectra, npix_in]`` or ``[npix_in]``
        High-resolution spectra, e.g. continuum-normalized synthetic spectra.
    setup : `~specutils_cinn.instruments.InstrumentSetup`
        Target grid and resolving power, e.g. ``fourmost_setup("hr", step=0.1)``.
    vsini : float or array-like, shape ``[n_spectra]``, optional
        Projected rotational velocity in km/s (0 or None: no rotation).
    vmacro : float or array-like, shape ``[n_spectra]``, optional
        Macroturbulence in km/s (0 or None: none).
    limb_darkening : float
        Linear limb-darkening coefficient of the rotation profile.
    macroturbulence : {"radial-tangential", "gaussian"}
        Macroturbulence profile.
    input_resolving_power : float, optional
        Resolving power the input already has. The LSF applied is then the quadrature difference,
        FWHM :math:`\lambda\sqrt{R^{-2} - R_\mathrm{in}^{-2}}`. Default: the input is treated as
        infinitely resolved.
    resample : {"bin", "linear"}
        ``"bin"``: flux-conserving average over each output pixel (default; includes the
        pixel's own box smoothing, as a detector does). ``"linear"``: linear interpolation at the
        pixel centers (fine since the convolved spectrum is well sampled by the input).
    edge : {"nearest", "reflect"}
        Extension beyond the ends of the input (matters only if the input ends within a
        kernel width of a segment edge).

    Returns
    -------
    degraded : same type and dtype as ``flux``, shape ``[n_spectra, setup.grid.npix]``
        Spectra on ``setup.grid`` (segments concatenated as in ``setup.grid.segment_slices``).

    Raises
    ------
    ValueError
        If the input does not cover a segment, or an option is invalid.
    """
    if not isinstance(setup, InstrumentSetup):
        raise TypeError(f"setup must be an InstrumentSetup, got {type(setup).__name__}")
    if resample not in ("bin", "linear"):
        raise ValueError(f"resample must be 'bin' or 'linear', got {resample!r}")
    if macroturbulence not in ("radial-tangential", "gaussian"):
        raise ValueError(
            f"macroturbulence must be 'radial-tangential' or 'gaussian', got {macroturbulence!r}"
        )
    eps = float(limb_darkening)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"limb_darkening must be in [0, 1], got {limb_darkening!r}")
    _check_edge(edge)
    r_in = None
    if input_resolving_power is not None:
        r_in = float(input_resolving_power)
        if not (math.isfinite(r_in) and r_in > 0):
            raise ValueError(f"input_resolving_power must be positive, got {input_resolving_power}")
    w = as_wave(wave)
    f, was_numpy, was_1d = as_flux(flux, w.size, finite=True)
    n = f.shape[0]
    vs = per_spectrum(0.0 if vsini is None else vsini, n, "vsini", unit=KM_S)
    vm = per_spectrum(0.0 if vmacro is None else vmacro, n, "vmacro", unit=KM_S)

    out = f.new_empty((n, setup.grid.npix))
    if n == 0:
        return restore(out, was_numpy, was_1d)
    for seg, sl in zip(setup.grid.segments, setup.grid.segment_slices, strict=True):
        edges = seg.edges
        tol = 1e-9 * w[-1]
        if w[0] > edges[0] + tol or w[-1] < edges[-1] - tol:
            raise ValueError(
                f"the input ({w[0]:.3f}-{w[-1]:.3f} A) does not cover segment {seg.name!r} "
                f"({edges[0]:.3f}-{edges[-1]:.3f} A)"
            )
        r = _effective_resolving_power(setup.resolving_power[seg.name], r_in, seg.name)
        r_min = float(np.min(r(edges) if callable(r) else r))
        margin = (vs.max() + 4.0 * vm.max() + 3.0 * C_KMS / r_min) / C_KMS
        lo = int(np.clip(np.searchsorted(w, edges[0] * (1 - margin), "right") - 2, 0, None))
        hi = int(np.clip(np.searchsorted(w, edges[-1] * (1 + margin), "left") + 2, None, w.size))
        ww, fw = w[lo:hi], f[:, lo:hi]
        ln = np.log(ww)
        builders: list[Callable[[float], np.ndarray]] = []
        if vs.max() > 0:
            builders.append(lambda step: _rotation_kernel(vs, step * C_KMS, eps))
        if vm.max() > 0:
            builders.append(lambda step: _macro_kernel(vm, step * C_KMS, macroturbulence))
        if not callable(r):
            step = min(_default_step(ln), 1.0 / r / _PIX_PER_FWHM)
            builders.append(lambda s, r=r: _gaussian_kernel(1.0 / r / _FWHM_PER_SIGMA / s))
            conv = _convolve_on(ln, fw, step, builders, edge)
        else:
            if builders:
                fw = _convolve_on(ln, fw, _default_step(ln), builders, edge)
            conv = gaussian_lsf_broaden(ww, fw, r, edge=edge)
        if resample == "bin":
            out[:, sl] = bin_average_rows(ww, conv, edges)
        else:
            out[:, sl] = interp_rows(seg.centers, ww, conv)
    return restore(out, was_numpy, was_1d)


def degrade_spectrum(
    spectrum: Any,
    setup: InstrumentSetup,
    *,
    input_resolving_power: float | None = None,
    vsini: float | None = None,
    vmacro: float | None = None,
    margin: float = 3.0,
) -> Any:
    r"""Degrade an observed or synthetic `~specutils.Spectrum` to an instrument setup.

    The spectrum is convolved to the resolving power of each segment of ``setup`` (the
    quadrature difference when ``input_resolving_power`` is given) and averaged over the
    setup's pixels with `degrade`. Parts of the setup's grid the input does not cover, and every
    output pixel that missing input reaches (non-finite or non-positive flux, masked pixels, e.g.
    a CCD gap stored as zeros), are NaN, so the estimator counts them as not covered.

    Parameters
    ----------
    spectrum : `~specutils.Spectrum`
        One 1-D spectrum in its rest frame, with a wavelength spectral axis in the medium of
        ``setup.grid`` (4MOST and the bundled models use air wavelengths). Its ``mask`` (True =
        bad) is honored; uncertainties are not propagated.
    setup : `~specutils_cinn.instruments.InstrumentSetup`
        Target grid and resolving power, e.g. ``estimator.instrument_setup`` or
        ``fourmost_setup("hr")``.
    input_resolving_power : float, optional
        Resolving power the input already has (e.g. 115,000 for HARPS). Default: treated as
        infinitely resolved, which over-broadens a real observation slightly.
    vsini, vmacro : float, optional
        Extra rotational / radial-tangential macroturbulent broadening in km/s (for synthetic
        input; an observed star already has its own).
    margin : float
        Angstrom of input needed beyond each covered stretch of a segment (the convolution
        kernels reach that far); output pixels closer than this to an end of the input, or to
        a jump in its wavelengths (more than 1 A and 20 median pixel steps), are NaN.

    Returns
    -------
    `~specutils.Spectrum`
        Flux on ``setup.grid`` (segments concatenated, NaN where not covered) with the input's
        flux unit, and ``meta["resolving_power"]`` = the setup's resolving power (a dictionary
        by segment) and ``meta["medium"]`` = the grid's medium.

    Raises
    ------
    TypeError
        If ``spectrum`` is not a `~specutils.Spectrum` or ``setup`` not an `InstrumentSetup`.
    ValueError
        If the spectrum is not 1-D, its spectral axis is not a wavelength, it does not overlap
        the setup's grid, or ``input_resolving_power`` is below the setup's resolving power.

    Examples
    --------
    >>> import astropy.units as u, numpy as np
    >>> from specutils import Spectrum
    >>> from specutils_cinn.instruments import degrade_spectrum, fourmost_setup
    >>> wave = np.arange(6090.0, 6800.0, 0.01) * u.AA
    >>> flux = (1 - 0.5 * np.exp(-0.5 * ((wave.value - 6500) / 0.05) ** 2)) * u.one
    >>> out = degrade_spectrum(Spectrum(flux=flux, spectral_axis=wave), fourmost_setup("hr"))
    >>> round(float(np.nanmin(out.flux.value)), 2)  # the line is shallower at R = 20,000
    0.83
    """
    import astropy.units as u
    from specutils import Spectrum

    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"spectrum must be a specutils Spectrum, got {type(spectrum).__name__}")
    if not isinstance(setup, InstrumentSetup):
        raise TypeError(f"setup must be an InstrumentSetup, got {type(setup).__name__}")
    if spectrum.flux.ndim != 1:
        raise ValueError(f"degrade_spectrum takes one 1-D spectrum, got flux shape "
                         f"{spectrum.flux.shape}")
    axis = spectrum.spectral_axis
    if axis.unit.physical_type != "length":
        raise ValueError(f"the spectral axis must be a wavelength, got unit {axis.unit}")
    w = np.asarray(axis.to_value(u.AA), dtype=np.float64)
    f = np.asarray(spectrum.flux.value, dtype=np.float64)
    bad = ~np.isfinite(f) | ~np.isfinite(w) | (f <= 0)
    if spectrum.mask is not None:
        bad |= np.asarray(spectrum.mask, dtype=bool)
    keep = np.isfinite(w)
    w, f, bad = w[keep], f[keep], bad[keep]
    order = np.argsort(w, kind="stable")
    w, idx = np.unique(w[order], return_index=True)  # sorted, repeated wavelengths dropped
    f, bad = f[order][idx], bad[order][idx]
    if w.size < 2 or bad.all():
        raise ValueError("the spectrum has fewer than two valid pixels")
    if input_resolving_power is not None:
        r_min = min(float(np.max(setup.resolving_power_at(np.array([s.start, s.stop]))))
                    for s in setup.grid.segments)
        if not float(input_resolving_power) > r_min:
            raise ValueError(f"input_resolving_power {input_resolving_power} must exceed the "
                             f"setup's resolving power ({r_min:g})")
    if bad.any():  # fill for the convolution; every output pixel a filled one reaches is NaN
        f = f.copy()
        f[bad] = np.interp(w[bad], w[~bad], f[~bad])
    from ..wavelength_grid import GridSegment, WavelengthGrid

    out = np.full(setup.grid.npix, np.nan)
    both = np.stack([f, bad.astype(np.float64)])
    # Contiguous stretches of the input: a jump in wavelength far above the sampling (two
    # echelle windows, a chip gap left out of the file) is not bridged.
    dw = np.diff(w)
    jumps = np.flatnonzero(dw > max(1.0, 20.0 * float(np.median(dw))))
    for run in np.split(np.arange(w.size), jumps + 1):
        good = run[~bad[run]]
        if good.size < 2:
            continue
        lo_w, hi_w = w[good[0]] + margin, w[good[-1]] - margin
        for seg, sl in zip(setup.grid.segments, setup.grid.segment_slices, strict=True):
            lo, hi = max(seg.start, lo_w), min(seg.stop, hi_w)
            i0 = int(np.ceil((lo - seg.start) / seg.step - 1e-9))
            i1 = int(np.floor((hi - seg.start) / seg.step + 1e-9))
            if i1 - i0 < 2:
                continue
            sub = GridSegment(seg.name, seg.start + i0 * seg.step, seg.start + i1 * seg.step,
                              seg.step)
            one = InstrumentSetup(setup.name, WavelengthGrid((sub,), setup.grid.medium),
                                  {seg.name: setup.resolving_power[seg.name]})
            flux, hit = degrade(w[run], both[:, run], one,
                                input_resolving_power=input_resolving_power,
                                vsini=vsini, vmacro=vmacro)
            flux[hit > 1e-3] = np.nan
            out[sl][i0 : i1 + 1] = flux
    if not np.isfinite(out).any():
        raise ValueError(
            f"the spectrum ({w[0]:.1f}-{w[-1]:.1f} A) does not cover any pixel of the setup "
            f"{setup.name!r} ({setup.grid.segments[0].start:.1f}-"
            f"{setup.grid.segments[-1].stop:.1f} A)"
        )
    rp = {name: (r if not callable(r) else getattr(r, "to_dict", lambda: None)())
          for name, r in setup.resolving_power.items()}
    meta = {"resolving_power": rp, "medium": setup.grid.medium}
    return Spectrum(flux=out * spectrum.flux.unit, spectral_axis=setup.grid.wavelength,
                    meta=meta)
