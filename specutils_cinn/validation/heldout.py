"""Held-out and solar spectra for a model, and the estimator runs on them.

What the validation pages (``scripts/validation_report.py``) and the calibrations
(`specutils_cinn.calibration.fit_flag`, `specutils_cinn.calibration.heldout`) run a model on:
held-out stars of a synthesis grid (or of the v2 grid's shards,
`specutils_cinn.validation.shard_heldout`) or of a training set degraded to the model's setup
(`heldout_from_grid`, `heldout_from_training_set`, returning a `HeldOut`), photon-like noisy
realizations of them (`noisy_spectrum`), observed solar spectra (`sun_spectra`, `sun_noisy`),
and the estimator runs, cross-fitted by star when the model's posterior calibration records
its folds (`run_heldout`, `cross_fitted_estimators`).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from ..calibration import (
    LEGACY_CROSS_FIT_RULE,
    PosteriorCalibration,
    central_coverage,
    cross_fit_fold,
)
from ..estimator import CINNParameterEstimator
from ..instruments import InstrumentSetup, add_noise, degrade, snr_per_pixel
from ..model import CINNModel
from ..wavelength_grid import GridSegment, WavelengthGrid
from .metrics import posterior_rank_fraction
from .report import QUANTILES
from .shard_heldout import draw_vsini, heldout_stars, lower_resolution, shard_heldout_fields

__all__ = [
    "HARPS_R",
    "UVES_R",
    "HeldOut",
    "Run",
    "CrossFitted",
    "cross_fitted_estimators",
    "heldout_from_grid",
    "heldout_from_training_set",
    "model_setup",
    "noisy_spectrum",
    "raw_coverage",
    "run_estimator",
    "run_heldout",
    "segment_setup",
    "subset_spectrum",
    "sun_spectra",
    "sun_noisy",
]

#: Resolving powers of the HARPS and UVES solar spectra.
HARPS_R, UVES_R = 115000.0, 80000.0


@dataclass
class HeldOut:
    """Noise-free held-out spectra on the model grid and their true labels.

    Attributes
    ----------
    flux : numpy.ndarray
        ``[N, npix]`` on the model grid.
    truth : numpy.ndarray
        ``[N, D]`` true labels in the model's parameter order.
    star : numpy.ndarray
        ``[N]`` star (or group) id.
    description : str
        Where the spectra come from (RST).
    rerender : callable or None
        ``(rows, R) -> [n, npix]``: the rows re-made at another resolving power; None if
        impossible.
    higher_resolution_possible : bool
        Whether ``rerender`` can go above the model's resolving power.
    extra : dict of str to numpy.ndarray
        Labels of the source that the model does not predict.
    """

    flux: np.ndarray
    truth: np.ndarray
    star: np.ndarray
    description: str
    rerender: Callable[[np.ndarray, float], np.ndarray] | None = None
    higher_resolution_possible: bool = False
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def model_setup(est: CINNParameterEstimator) -> InstrumentSetup:
    """The model's grid and resolving power as an instrument setup.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`

    Returns
    -------
    `~specutils_cinn.instruments.InstrumentSetup`
    """
    md = est.model.metadata
    return InstrumentSetup(md.full_name, md.grid, dict(md.resolving_power))


def segment_setup(setup: InstrumentSetup, seg: GridSegment, r: Any = None) -> InstrumentSetup:
    """A one-segment setup (optionally with another resolving power).

    Parameters
    ----------
    setup : `~specutils_cinn.instruments.InstrumentSetup`
        The full setup.
    seg : `~specutils_cinn.wavelength_grid.GridSegment`
        The segment kept.
    r : float or callable, optional
        Its resolving power (default: the setup's).

    Returns
    -------
    `~specutils_cinn.instruments.InstrumentSetup`
    """
    rp = setup.resolving_power[seg.name] if r is None else r
    return InstrumentSetup(setup.name, WavelengthGrid((seg,), setup.grid.medium), {seg.name: rp})


def heldout_from_training_set(est: CINNParameterEstimator, path: str | Path) -> HeldOut:
    """The spectra of a model's validation groups in an already-degraded training set.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
        The model's estimator.
    path : str or pathlib.Path
        A training set (`~specutils_cinn.training.load_training_set`) on the model's grid.

    Returns
    -------
    HeldOut
        Its ``rerender`` broadens to lower resolving powers only.

    Raises
    ------
    ValueError
        If the training set's grid is not the model's.
    """
    from ..training import load_training_set

    md = est.model.metadata
    ts = load_training_set(path)
    if ts.grid.to_dict() != md.grid.to_dict():
        raise ValueError(f"{path}: its wavelength grid is not the model's")
    rows = np.flatnonzero(np.isin(ts.groups, md.training["validation_groups"]))
    cols = [ts.parameters.index(p) for p in md.parameter_names]
    setup = model_setup(est)
    flux = ts.flux[rows].astype(np.float64)

    def rerender(sel: np.ndarray, r_target: float) -> np.ndarray:
        return lower_resolution(flux[sel], md.grid, setup.resolving_power, r_target)

    extra = {p: ts.labels[rows, ts.parameters.index(p)] for p in ts.parameters
             if p not in md.parameter_names}
    return HeldOut(
        flux=flux,
        truth=ts.labels[rows][:, cols],
        star=np.asarray(ts.groups)[rows],
        description=(
            f"training set ``{Path(path).name}`` (already degraded to the model's setup): the "
            f"spectra of the model's {len(md.training['validation_groups'])} validation groups "
            "(stars never used to fit the weights, only to pick the best training step)"
        ),
        rerender=rerender,
        higher_resolution_possible=False,
        extra=extra,
    )


def heldout_from_grid(
    est: CINNParameterEstimator, path: str | Path, which: str, vsini_per_star: int, seed: int
) -> HeldOut:
    """Held-out stars of a synthesis grid (or of v2 grid shards), degraded to the model's setup.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
        The model's estimator.
    path : str or pathlib.Path
        A synthesis grid at synthesis resolution (`~specutils_cinn.synthesis.read_grid`), or
        a folder of v2 grid shards (`~specutils_cinn.synthesis.shards.read_shards`), which
        `~specutils_cinn.validation.shard_heldout.shard_heldout_fields` reads.
    which : {"holdout", "validation-groups"}
        The grid's ``holdout`` stars, or the stars whose ``star_id`` is one of the model's
        ``validation_groups``.
    vsini_per_star : int
        Spectra per star, each with its own v sin i drawn uniformly in the model's range
        (no rotation if the model does not predict v sin i).
    seed : int
        Seed of the v sin i draws.

    Returns
    -------
    HeldOut
        From a grid file: degraded with `~specutils_cinn.instruments.degrade`; ``rerender``
        makes any resolving power. From shards: the binned spectra rotated with
        `~specutils_cinn.instruments.rotation.BinnedRotation` (and broadened by
        macroturbulence if the model's training simulator drew it); ``rerender`` makes lower
        resolving powers only (``higher_resolution_possible`` is False).

    Raises
    ------
    ValueError
        If there are no such stars, the grid lacks a label the model predicts, or no grid
        segment covers a model segment; from shards, also if the model's grid is not a crop
        of one 4MOST setup's native pixels or its resolving power is not the setup's.
    """
    from ..synthesis.grid_file import read_grid

    if Path(path).is_dir():
        return HeldOut(**shard_heldout_fields(est, path, which, vsini_per_star, seed))
    md = est.model.metadata
    grid = read_grid(path)
    stars, what = heldout_stars(grid, md, which, path)
    rows, vsini, vs_note = draw_vsini(md, stars, vsini_per_star, np.random.default_rng(seed))
    params = md.parameter_names
    truth = np.empty((rows.size, len(params)))
    for j, p in enumerate(params):
        if p == "vsini":
            truth[:, j] = vsini
        elif p in grid.labels:
            truth[:, j] = grid.labels[p][rows]
        else:
            raise ValueError(f"{path}: the grid has no label {p!r}")
    setup = model_setup(est)

    def source_for(seg: GridSegment) -> tuple[np.ndarray, np.ndarray]:
        for w, f in grid.segments.values():
            if w[0] <= seg.start - 5.0 and w[-1] >= seg.stop + 5.0:
                return np.asarray(w, dtype=np.float64), f
        raise ValueError(f"{path}: no grid segment covers model segment {seg.name!r}")

    def render(sel: np.ndarray, r_target: float | None) -> np.ndarray:
        out = np.empty((sel.size, md.grid.npix))
        for seg, sl in zip(md.grid.segments, md.grid.segment_slices, strict=True):
            w, f = source_for(seg)
            sub = segment_setup(setup, seg, r_target)
            for start in range(0, sel.size, 64):
                chunk = sel[start : start + 64]
                out[start : start + chunk.size, sl] = degrade(
                    w, np.asarray(f[rows[chunk]], dtype=np.float64), sub, vsini=vsini[chunk]
                )
        return out

    extra = {p: grid.labels[p][rows] for p in grid.labels if p not in params}
    return HeldOut(
        flux=render(np.arange(rows.size), None),
        truth=truth,
        star=np.asarray(grid.star_id)[rows],
        description=(
            f"synthesis grid ``{Path(path).name}`` at synthesis resolution, {what}, degraded "
            f"here to the model's setup with ``instruments.degrade`` ({vs_note})"
        ),
        rerender=lambda sel, r: render(sel, r),
        higher_resolution_possible=True,
        extra=extra,
    )


@dataclass
class Run:
    """Estimator output for one set of spectra.

    Attributes
    ----------
    name : str
        What the spectra are.
    truth : numpy.ndarray or None
        Their true labels, if known.
    table : astropy.table.QTable
        The output of ``predict``.
    samples : astropy.table.QTable
        The output of ``sample_posterior``.
    """

    name: str
    truth: np.ndarray | None
    table: Any
    samples: Any


def noisy_spectrum(
    flux: np.ndarray, wave: u.Quantity, pixel_width: np.ndarray, snr: float, seed: int
) -> Spectrum:
    """The training noise model at ``snr`` per Angstrom (continuum 1) as a StdDev Spectrum.

    The noise is `specutils_cinn.instruments.draw_noise` (through
    `~specutils_cinn.instruments.add_noise` with ``photon_noise=True``), the rule the networks
    were trained with: photon-like noise, uncertainty computed from the noisy flux.

    Parameters
    ----------
    flux : numpy.ndarray
        ``[N, npix]`` noise-free flux.
    wave : astropy.units.Quantity
        The pixel centers.
    pixel_width : numpy.ndarray
        Pixel widths in Angstrom.
    snr : float
        S/N per Angstrom at the continuum.
    seed : int
        Seed of the noise.

    Returns
    -------
    specutils.Spectrum
    """
    gen = torch.Generator().manual_seed(int(seed))
    noisy, sigma = add_noise(torch.as_tensor(flux, dtype=torch.float64), snr, pixel_width, gen,
                             photon_noise=True)
    return Spectrum(flux=noisy.numpy() * u.one, spectral_axis=wave,
                    uncertainty=StdDevUncertainty(sigma.numpy()))


def run_estimator(
    est: CINNParameterEstimator, spec: Any, name: str, truth: np.ndarray | None, *,
    n_samples: int, seed: int, device: str | None = None,
) -> Run:
    """Posterior summaries (with `QUANTILES`) and draws of a set of spectra.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
    spec : specutils.Spectrum or list
        The spectra.
    name : str
        What they are.
    truth : numpy.ndarray or None
        Their true labels.
    n_samples : int
        Posterior draws per spectrum.
    seed : int
        Seed of the draws.
    device : str, optional
        Where the network runs (default: the estimator's).

    Returns
    -------
    Run
    """
    kw = {"n_samples": n_samples, "seed": seed, "progress": False, "device": device}
    table = est.predict(spec, quantiles=QUANTILES, **kw)
    samples = est.sample_posterior(spec, **kw)
    return Run(name, truth, table, samples)


def subset_spectrum(spec: Spectrum, rows: np.ndarray) -> Spectrum:
    """The rows ``rows`` of a spectrum with 2-D flux.

    Parameters
    ----------
    spec : specutils.Spectrum
        ``[N, npix]`` flux, optionally with StdDev uncertainties.
    rows : numpy.ndarray
        Row indices.

    Returns
    -------
    specutils.Spectrum
    """
    unc = None if spec.uncertainty is None else StdDevUncertainty(spec.uncertainty.array[rows])
    return Spectrum(flux=spec.flux[rows], spectral_axis=spec.spectral_axis, uncertainty=unc)


class CrossFitted(NamedTuple):
    """The estimators of `cross_fitted_estimators` and the rule that made their folds."""

    #: With the calibration fitted on fold A (for the stars of fold B).
    fitted_on_a: CINNParameterEstimator
    #: With the calibration fitted on fold B (for the stars of fold A).
    fitted_on_b: CINNParameterEstimator
    #: The calibration's recorded ``cross_validation["rule"]``
    #: (`~specutils_cinn.calibration.cross_fit_fold`); the legacy rule where none is recorded.
    rule: str


def cross_fitted_estimators(est: CINNParameterEstimator) -> CrossFitted | None:
    """Estimators with the calibrations fitted on fold A and on fold B of the held-out stars.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
        An estimator whose posterior calibration records its cross-validation folds
        (``info["cross_validation"]["folds"]``).

    Returns
    -------
    CrossFitted or None
        None if the model's calibration records no folds.
    """
    md = est.model.metadata
    cal = md.posterior_calibration
    record = {} if cal is None else cal.info.get("cross_validation", {})
    folds = record.get("folds")
    if not folds:
        return None
    out = []
    for name in ("A", "B"):
        c = PosteriorCalibration(folds[name]["scale"], folds[name]["floor"],
                                 width_scale=folds[name].get("width_scale", {}))
        m = CINNModel(md.replace(posterior_calibration=c), est.model.network,
                      emulator=est.model.emulator)
        out.append(CINNParameterEstimator(m, device=est.device))
    return CrossFitted(out[0], out[1], str(record.get("rule", LEGACY_CROSS_FIT_RULE)))


def run_heldout(
    est: CINNParameterEstimator, cross: tuple | None, spec: Spectrum, star: np.ndarray,
    name: str, truth: np.ndarray, *, n_samples: int, seed: int, device: str | None = None,
) -> Run:
    """`run_estimator`, cross-fitted when ``cross`` is given.

    The stars of fold A (`~specutils_cinn.calibration.cross_fit_fold` with the calibration's
    recorded rule) get the calibration fitted on fold B and vice versa; rows stay in input
    order.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
        Used when ``cross`` is None.
    cross : CrossFitted or None
        The output of `cross_fitted_estimators`.
    spec : specutils.Spectrum
        ``[N, npix]`` spectra.
    star : numpy.ndarray
        Star of each spectrum.
    name, truth, n_samples, seed, device
        As in `run_estimator`.

    Returns
    -------
    Run
    """
    kw = {"n_samples": n_samples, "seed": seed, "device": device}
    if cross is None:
        return run_estimator(est, spec, name, truth, **kw)
    from astropy.table import vstack

    in_a = cross_fit_fold(star, cross.rule)
    rows_b, rows_a = np.flatnonzero(~in_a), np.flatnonzero(in_a)
    parts = [run_estimator(e, subset_spectrum(spec, rows), name, truth[rows], **kw)
             for e, rows in ((cross[0], rows_b), (cross[1], rows_a)) if rows.size]
    order = np.argsort(np.concatenate([r for r in (rows_b, rows_a) if r.size]))
    table = vstack([p.table for p in parts], metadata_conflicts="silent")[order]
    samples = vstack([p.samples for p in parts], metadata_conflicts="silent")[order]
    return Run(name, truth, table, samples)


def raw_coverage(est: CINNParameterEstimator, spec: Spectrum, truth: np.ndarray, *,
                 n_samples: int, seed: int, device: str | None = None) -> np.ndarray:
    """Coverage of the central 68 % / 95 % intervals of the uncalibrated draws.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
    spec : specutils.Spectrum
        ``[N, npix]`` spectra.
    truth : numpy.ndarray
        ``[N, D]`` true labels.
    n_samples, seed, device
        As in `run_estimator`.

    Returns
    -------
    numpy.ndarray
        ``[D, 2]``.
    """
    kw = {"n_samples": n_samples, "seed": seed, "progress": False, "device": device}
    t = est.sample_posterior(spec, calibrated=False, **kw)
    draws = np.stack([np.asarray(t[p].value) for p in est.parameters], axis=-1)
    ok = np.isfinite(draws).all(axis=(1, 2))
    pit = posterior_rank_fraction(truth[ok], draws[ok])
    return central_coverage(pit.T, (0.68, 0.95))


def sun_spectra(
    est: CINNParameterEstimator, harps: str | Path | None, uves: str | Path | None
) -> list[tuple[str, np.ndarray, float]]:
    """Observed solar spectra degraded to the model's setup.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
    harps : str or pathlib.Path or None
        The HARPS (Ganymede) solar FITS file; skipped if None or missing. Given twice: with
        the chip gap masked and, as a test, not masked.
    uves : str or pathlib.Path or None
        The UVES solar atlas (gzipped text); skipped if None or missing.

    Returns
    -------
    list of (str, numpy.ndarray, float)
        Name, flux on the model grid (NaN where not covered) and the fraction covered.
    """
    from astropy.io import fits

    out = []
    sources = []
    if harps and Path(harps).is_file():
        with fits.open(harps) as hdul:
            h = hdul[0].header
            f = hdul[0].data.astype(np.float64)
        w = h["CRVAL1"] + h["CDELT1"] * (np.arange(f.size) + 1 - h["CRPIX1"])
        sources.append(("HARPS (Ganymede)", w, f, HARPS_R, True))
        sources.append(("HARPS, chip gap not masked", w, f, HARPS_R, False))
    if uves and Path(uves).is_file():
        with gzip.open(uves, "rt") as fh:
            d = np.loadtxt(fh)
        sources.append(("UVES", d[:, 0], d[:, 1], UVES_R, True))
    md = est.model.metadata
    setup = model_setup(est)
    for name, w, f, r_in, mask_gaps in sources:
        good = np.isfinite(f) & np.isfinite(w)
        w, idx = np.unique(w[good], return_index=True)  # sorted, duplicates dropped
        f = f[good][idx]
        # Missing data (e.g. the HARPS chip gap, 5304.7-5337.6 A, stored as zeros): fill by
        # interpolation for the convolution, and blank every output pixel the gap reaches.
        missing = f <= 0.02 * np.percentile(f, 95) if mask_gaps else np.zeros(f.size, bool)
        if missing.any():
            f = f.copy()
            f[missing] = np.interp(w[missing], w[~missing], f[~missing])
        flux = np.full(md.grid.npix, np.nan)
        margin = 5.0
        for seg, sl in zip(md.grid.segments, md.grid.segment_slices, strict=True):
            lo, hi = max(seg.start, w[0] + margin), min(seg.stop, w[-1] - margin)
            i0 = int(np.ceil((lo - seg.start) / seg.step - 1e-9))
            i1 = int(np.floor((hi - seg.start) / seg.step + 1e-9))
            if i1 - i0 < 10:
                continue
            sub_seg = GridSegment(seg.name, seg.start + i0 * seg.step, seg.start + i1 * seg.step,
                                  seg.step)
            sub = segment_setup(setup, sub_seg)
            both = np.stack([f, missing.astype(np.float64)])
            deg, hit = degrade(w, both, sub, input_resolving_power=r_in)
            deg[hit > 1e-3] = np.nan
            flux[sl][i0 : i1 + 1] = deg
        cov = float(np.mean(np.isfinite(flux)))
        if cov > 0:
            out.append((name, flux, cov))
    return out


def sun_noisy(est: CINNParameterEstimator, flux: np.ndarray, snr: float, seed: int) -> Spectrum:
    """Photon noise relative to each segment's continuum (as make_example_spectrum.py).

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
    flux : numpy.ndarray
        ``[npix]`` flux on the model grid, NaN where not covered (kept NaN).
    snr : float
        S/N per Angstrom at each segment's continuum (95th percentile).
    seed : int
        Seed of the noise.

    Returns
    -------
    specutils.Spectrum
    """
    md = est.model.metadata
    rng = np.random.default_rng(seed)
    sigma = np.full_like(flux, np.nan)
    for sl in md.grid.segment_slices:
        f = flux[sl]
        ok = np.isfinite(f)
        if not ok.any():
            continue
        cont = np.percentile(f[ok], 95)
        snr_pix = snr_per_pixel(snr, md.grid.pixel_width[sl])
        sigma[sl] = np.sqrt(cont * np.clip(f, 1e-3 * cont, None)) / snr_pix  # NaN stays NaN
    noisy = flux + np.nan_to_num(sigma) * rng.standard_normal(flux.size)
    # The full model grid with NaN where the spectrum has no data: the estimator counts those
    # pixels as not covered. (A spectral axis with a hole in it would be bridged by
    # interpolation, and currently can crash the resampler.)
    return Spectrum(flux=noisy * u.one, spectral_axis=md.grid.wavelength,
                    uncertainty=StdDevUncertainty(sigma))


