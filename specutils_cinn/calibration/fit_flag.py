r"""Attach a spectrum emulator to a model, measure its error floor and calibrate ``POOR_FIT``.

`calibrate_fit_flag` (``specutils-cinn calibrate fit-flag``):

1. The emulator is trimmed to the model's pixels (`specutils_cinn.fit_check.trim_emulator`).
2. Held-out Turbospectrum stars of the synthesis grid (``holdout``: never used to train the
   emulator or the cINN) are degraded to the model's setup with ``instruments.degrade`` (with
   v sin i drawn in the model's range if it predicts v sin i); from a folder of v2 grid
   shards, their binned spectra are rotated with ``BinnedRotation`` instead (and broadened by
   the training simulator's macroturbulence, if it drew one:
   `~specutils_cinn.validation.shard_heldout`). The error floor per pixel is the
   RMS over these stars of (synthetic - emulated at the true labels, broadened as the fit
   check does, labels the model does not predict at their defaults), the squares averaged
   over `FLOOR_SMOOTH` pixels, at least `FLOOR_MIN`; with ``floor_teff_nodes``, one such floor
   per Teff node, each star weighted by `~specutils_cinn.emulator.hat_weights` of its Teff (the
   fit check interpolates the variance to each spectrum's posterior median Teff), so that the
   cool stars' larger emulator error neither hides in the average nor inflates the hot stars'
   floor. "As the fit check does"
   (`~specutils_cinn.fit_check.ModelEmulator.emulate`) includes its macroturbulence rule: for
   a model trained with macroturbulence as a nuisance the emulated spectra get the training
   range's midpoint, not the held-out star's own :math:`\zeta` (``HeldOut.extra["vmacro"]``),
   since the fit check cannot know a star's :math:`\zeta` either: the floor measures the
   emulator's error plus that unknown (the calibration info says so).
3. The same stars with photon noise at each S/N of `SNRS` go through the estimator.
   ``fit_chi2`` is computed two-fold cross-validated (floor from the other half of the stars,
   `~specutils_cinn.calibration.cross_fit_fold`) and in-sample; the threshold is the smallest
   of `CANDIDATES` for which the cross-validated flagged fraction is below ``max_fraction`` at
   every S/N.
4. Out-of-domain inputs: pure noise, the held-out stars at a lower resolving power (from
   shards: the binned spectra broadened by a Gaussian of the quadrature difference), the Sun.

The model with the emulator is saved; bundle it with ``scripts/bundle_model.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from ..emulator import hat_weights, load_emulator, pixel_error, teff_nodes
from ..estimator import CINNParameterEstimator
from ..fit_check import trim_emulator
from ..flags import QualityFlag
from ..instruments import snr_per_pixel
from ..model import CINNModel
from ..validation.heldout import heldout_from_grid, noisy_spectrum, sun_noisy, sun_spectra
from ..validation.shard_heldout import grid_source
from .posterior import CROSS_FIT_RULE, cross_fit_fold

__all__ = [
    "CANDIDATES",
    "DEFAULTS",
    "FLOOR_MIN",
    "FLOOR_SMOOTH",
    "LI_LINES",
    "SNRS",
    "calibrate_fit_flag",
    "describe_chi2",
    "flagged_fractions",
]

#: S/N per Angstrom at which the flagged fraction is measured.
SNRS = (10.0, 20.0, 50.0, 100.0, 250.0)
#: Candidate ``POOR_FIT`` thresholds on ``fit_chi2``, smallest first.
CANDIDATES = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0)
#: Label defaults for emulator labels the seed models do not predict.
DEFAULTS = {"ti_fe": 0.0, "mn_fe": 0.0, "ni_fe": 0.0, "li_fe": 0.0}
#: Li I lines (air, Angstrom) left out of the chi-square: A(Li) is not predicted.
LI_LINES = (6103.6, 6707.8, 8126.3)
#: Smallest error floor per pixel.
FLOOR_MIN = 1e-3
#: Pixels the squared residuals are averaged over for the error floor.
FLOOR_SMOOTH = 5


def flagged_fractions(chi2: np.ndarray, thresholds: tuple[float, ...]) -> dict[str, float]:
    """Fraction of the finite ``chi2`` values above each threshold.

    Parameters
    ----------
    chi2 : numpy.ndarray
        ``fit_chi2`` values (NaN ignored).
    thresholds : tuple of float
        The thresholds.

    Returns
    -------
    dict of str to float
        Keyed by ``f"{threshold:g}"``; NaN if no value is finite.
    """
    ok = np.isfinite(chi2)
    return {f"{t:g}": float(np.mean(chi2[ok] > t)) if ok.any() else float("nan")
            for t in thresholds}


def describe_chi2(chi2: np.ndarray) -> dict[str, float]:
    """Count, minimum, median, 98th percentile and maximum of the finite values.

    Parameters
    ----------
    chi2 : numpy.ndarray
        Values (NaN ignored).

    Returns
    -------
    dict of str to float
        ``{"n": 0}`` if none is finite.
    """
    c = chi2[np.isfinite(chi2)]
    if c.size == 0:
        return {"n": 0}
    q = np.percentile(c, [0, 50, 98, 100])
    return {"n": int(c.size), "min": float(q[0]), "median": float(q[1]), "p98": float(q[2]),
            "max": float(q[3])}


def _macroturbulence_note(probe: Any, parameters: list[str], drawn: bool) -> str:
    """How the floor treats macroturbulence (for the calibration info)."""
    if probe.vmacro_range is None:
        return "" if not drawn else (
            "; the held-out spectra carry macroturbulence and the emulated ones none (as in "
            "the fit check), so the floor includes its effect")
    lo, hi = probe.vmacro_range
    if "vmacro" in parameters:
        return (f"; macroturbulence: the model predicts vmacro, the emulated spectra are "
                f"broadened by the true zeta (as the fit check uses the posterior median), "
                f"clipped to 0-{hi:g} km/s")
    return (f"; macroturbulence: a nuisance of the training ({lo:g}-{hi:g} km/s), the held-out "
            f"spectra carry their own zeta drawn in that range and the emulated spectra the "
            f"fit check's fixed zeta = {0.5 * (lo + hi):g} km/s (the range's midpoint, the "
            f"prior mean): the floor measures the emulator's error plus what the fit check "
            f"cannot know, the star's own zeta")


def _chi2_at(est: CINNParameterEstimator, spec: Any, labels: np.ndarray) -> np.ndarray:
    """``fit_chi2`` of each spectrum at given labels (as ``predict`` computes it)."""
    prepared = est.prepare(spec, medium="air")
    return est.fit_statistics(prepared, labels, device="cpu").chi2


def calibrate_fit_flag(
    model: str | Path,
    emulator: str | Path,
    grid: str | Path,
    version: str,
    output: str | Path,
    *,
    vsini_per_star: int = 2,
    n_samples: int = 256,
    max_fraction: float = 0.02,
    ood_resolving_power: float | None = None,
    example: str | Path | None = None,
    sun_harps: str | Path | None = None,
    sun_uves: str | Path | None = None,
    seed: int = 1,
    noise_window: int = 0,
    floor_teff_nodes: Any = None,
    renormalize: bool = False,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Attach an emulator to a model, calibrate ``POOR_FIT`` and save the model.

    Parameters
    ----------
    model : str or pathlib.Path
        Model directory.
    emulator : str or pathlib.Path
        Emulator directory (``specutils-cinn emulator train``).
    grid : str or pathlib.Path
        Synthesis grid (a file) or v2 grid (a folder of shards) whose ``holdout`` stars measure
        the floor and the threshold
        (`~specutils_cinn.validation.heldout.heldout_from_grid`).
    version : str
        Version of the model saved with the emulator.
    output : str or pathlib.Path
        Model directory to write.
    vsini_per_star : int, optional
        Spectra per held-out star (one if the model does not predict v sin i).
    n_samples : int, optional
        Posterior draws per spectrum.
    max_fraction : float, optional
        Largest cross-validated fraction of held-out spectra flagged at any S/N.
    ood_resolving_power : float, optional
        Resolving power of the wrong-resolution test (default: 7000 for HR, 2000 for LR).
    example : str or pathlib.Path, optional
        A solar example spectrum (FITS) run as an out-of-domain test of HR models.
    sun_harps, sun_uves : str or pathlib.Path, optional
        Solar spectra for the out-of-domain tests
        (`~specutils_cinn.validation.heldout.sun_spectra`).
    seed : int, optional
        Seed of the v sin i draws, the noise and the posterior draws.
    noise_window : int, optional
        The chi-square's noise window in pixels (`~specutils_cinn.model.EmulatorSpec`
        ``noise_window``; 0: each pixel's reported variance), used in the calibration and
        stored in the model.
    floor_teff_nodes : sequence of float, optional
        Strictly increasing Teff (K): measure the floor per node and store a Teff-dependent
        floor (`~specutils_cinn.fit_check.ModelEmulator` ``floor_teff``). Every node needs at
        least one held-out star's weight in each cross-fitting half. None: one floor.
    renormalize : bool, optional
        Divide the emulated spectra by the model's input normalization before the comparison
        (`~specutils_cinn.model.EmulatorSpec` ``renormalize``), in the calibration and in the
        model saved.
    log : callable, optional
        Called with progress messages.

    Returns
    -------
    dict
        The report (JSON-serializable): the floor, the flagged fractions per S/N and candidate,
        the chosen ``threshold`` and the out-of-domain results.
    """
    t0 = time.perf_counter()
    base = CINNModel.load(model)
    md = base.metadata
    nodes = None
    if floor_teff_nodes is not None:
        nodes = teff_nodes(floor_teff_nodes, "floor_teff_nodes")
        if "teff" not in md.parameter_names:
            raise ValueError("floor_teff_nodes needs a model that predicts teff")
    est0 = CINNParameterEstimator(base, device="cpu")
    step = md.grid.segments[0].step
    half = 1.5 if step < 0.2 else 3.0
    exclude = [(w - half, w + half) for w in LI_LINES
               if any(s.start - half <= w <= s.stop + half for s in md.grid.segments)]
    emu = trim_emulator(load_emulator(emulator), md.grid)

    held = heldout_from_grid(est0, grid, "holdout",
                             vsini_per_star if "vsini" in md.parameter_names else 1, seed)
    n = len(held.truth)
    log(f"{n} held-out spectra ({len(np.unique(held.star))} stars), "
        f"{time.perf_counter() - t0:.0f} s")

    # ---------------------------------------------------------------- error floor
    probe = base.attach_emulator(emu, 0.0, chi2_threshold=1.0, label_defaults=DEFAULTS,
                                 exclude=exclude, trim=False, noise_window=noise_window,
                                 renormalize=renormalize).emulator
    # emulated as the fit check does (ModelEmulator.emulate): at the true labels, rotated by
    # the true v sin i, with the fit check's macroturbulence rule, not the held-out spectra's
    # own nuisance zeta (HeldOut.extra["vmacro"]), which the fit check cannot know
    with torch.no_grad():
        f_emu = probe.emulate(md.parameter_names, held.truth, device="cpu").numpy()
    synth = np.full((n, emu.grid.npix), np.nan)
    synth[:, probe.emulator_index] = held.flux[:, probe.model_index]
    if renormalize:
        # in the units the fit check compares: both divided by the model's normalization
        ok = np.isfinite(held.flux)
        for arr in (synth, f_emu):
            arr[:, probe.emulator_index] = probe.renormalized(
                torch.from_numpy(np.ascontiguousarray(arr[:, probe.emulator_index],
                                                      dtype=np.float64)), ok).numpy()
    resid = synth - f_emu
    fold_a = cross_fit_fold(held.star)

    teff = held.truth[:, md.parameter_names.index("teff")] if nodes is not None else None

    def floor_of(rows: np.ndarray, name: str) -> np.ndarray:
        if nodes is None:
            return pixel_error(resid[rows], emu.grid, smooth=FLOOR_SMOOTH, floor=FLOOR_MIN)
        w = hat_weights(teff[rows], nodes).numpy()
        thin = [float(t) for t, c in zip(nodes, w.sum(0), strict=True) if c < 1.0]
        if thin:
            raise ValueError(f"floor_teff_nodes {thin} have less than one held-out star's "
                             f"weight around them ({name}); choose nodes inside the held-out "
                             "stars' Teff range")
        return np.stack([pixel_error(resid[rows], emu.grid, smooth=FLOOR_SMOOTH,
                                     floor=FLOOR_MIN, weights=c) for c in w.T])

    every = np.ones(n, bool)
    floors = {"all": floor_of(every, "all stars"), "A": floor_of(fold_a, "half A"),
              "B": floor_of(~fold_a, "half B")}
    floor_info = {
        "rms_all_pixels": float(np.sqrt(np.mean(resid**2))),
        "floor_median": float(np.median(floors["all"])),
        "floor_p90": float(np.percentile(floors["all"], 90)),
        "floor_max": float(floors["all"].max()),
    }
    if nodes is not None:
        floor_info["teff_nodes"] = nodes.tolist()
        floor_info["floor_median_per_node"] = [float(np.median(f)) for f in floors["all"]]
        floor_info["floor_p90_per_node"] = [float(np.percentile(f, 90)) for f in floors["all"]]
    log(f"floor {floor_info}")
    ests = {k: CINNParameterEstimator(
        base.attach_emulator(emu, f, chi2_threshold=1.0, label_defaults=DEFAULTS,
                             exclude=exclude, trim=False, noise_window=noise_window,
                             floor_teff=nodes, renormalize=renormalize),
        device="cpu")
        for k, f in floors.items()}

    def chi2_of(spec: Any, cross: bool = False) -> tuple[np.ndarray, np.ndarray, Any]:
        t = ests["all"].predict(spec, n_samples=n_samples, seed=seed, progress=False)
        ins = np.asarray(t["fit_chi2"])
        if not cross:
            return ins, ins, t
        median = np.column_stack([np.asarray(t[p].value, dtype=float)
                                  for p in md.parameter_names])
        cv = np.full(len(t), np.nan)
        for k, rows in (("A", ~fold_a), ("B", fold_a)):  # floor from the other half
            cv[rows] = _chi2_at(ests[k], spec, median)[rows]
        return ins, cv, t

    wave = md.grid.wavelength
    width = md.grid.pixel_width
    report: dict[str, Any] = {"model": md.full_name, "emulator": str(emulator),
                              "noise_window": noise_window, "n_heldout": n,
                              "exclude": exclude, "defaults": DEFAULTS,
                              "floor": floor_info, "in_domain": {}, "ood": {}}
    t_inf = time.perf_counter()
    for snr in SNRS:
        spec = noisy_spectrum(held.flux, wave, width, snr, seed * 100 + int(snr))
        ins, cv, t = chi2_of(spec, cross=True)
        truth = _chi2_at(ests["all"], spec, held.truth)
        report["in_domain"][f"{snr:g}"] = {
            "cv": describe_chi2(cv), "in_sample": describe_chi2(ins),
            "flagged_cv": flagged_fractions(cv, CANDIDATES),
            "flagged_in_sample": flagged_fractions(ins, CANDIDATES),
            "edge_or_lowsnr": float(np.mean(np.asarray(t["flags"]) & 48 > 0)),
            "at_true_labels_in_sample": describe_chi2(truth),
        }
        log(f"S/N {snr:g}: cv {describe_chi2(cv)}  in-sample median {np.nanmedian(ins):.2f}, "
            f"at true labels {describe_chi2(truth)}")
    report["seconds_in_domain"] = time.perf_counter() - t_inf
    worst = {f"{c:g}": max(report["in_domain"][f"{s:g}"]["flagged_cv"][f"{c:g}"] for s in SNRS)
             for c in CANDIDATES}
    threshold = next((c for c in CANDIDATES if worst[f"{c:g}"] < max_fraction), CANDIDATES[-1])
    report["worst_flagged_fraction_cv"] = worst
    report["threshold"] = threshold
    log(f"threshold {threshold} (worst cross-validated flagged fraction {worst})")

    info = {
        "error_floor": (
            "per pixel: RMS over held-out Turbospectrum stars of (synthetic - emulated at the "
            "true labels, unpredicted labels at their defaults, rotated as in the estimator), "
            f"squares averaged over {FLOOR_SMOOTH} pixels, at least {FLOOR_MIN}"
            + ("" if nodes is None else
               f"; per Teff node {nodes.tolist()} K (stars weighted by hat functions of their "
               "Teff), interpolated linearly in the posterior median Teff")
            + ("; both spectra divided by the model's input normalization first (renormalize)"
               if renormalize else "")
            + _macroturbulence_note(probe, md.parameter_names, "vmacro" in held.extra)
        ),
        "floor_stars": int(len(np.unique(held.star))),
        "floor_source": grid_source(grid),
        "heldout": held.description,
        "floor_summary": floor_info,
        "threshold": (
            f"smallest of {list(CANDIDATES)} flagging < {max_fraction:.0%} of held-out "
            f"spectra (2-fold cross-validated floor; {CROSS_FIT_RULE}) at S/N {list(SNRS)}"
        ),
        "worst_flagged_fraction": worst[f"{threshold:g}"],
        "emulator_source": dict(emu.metadata.get("training_grid", {}), name=emu.metadata.get(
            "name"), weights_sha256=emu.metadata.get("weights_sha256")),
        "script": "specutils-cinn calibrate fit-flag",
    }
    final = base.attach_emulator(emu, floors["all"], chi2_threshold=threshold,
                                 label_defaults=DEFAULTS, exclude=exclude, info=info, trim=False,
                                 noise_window=noise_window, floor_teff=nodes,
                                 renormalize=renormalize)
    final = CINNModel(final.metadata.replace(version=version), final.network,
                      emulator=final.emulator)
    final.save(output)
    est = CINNParameterEstimator(CINNModel.load(output), device="cpu")
    ests["all"] = est

    # ---------------------------------------------------------------- out of domain
    def ood(name: str, spec: Any) -> None:
        ins, _, t = chi2_of(spec)
        flags = np.asarray(t["flags"])
        poor = (flags & int(QualityFlag.POOR_FIT)) > 0
        other = (flags & 0b111111) > 0
        report["ood"][name] = {"chi2": describe_chi2(ins), "poor_fit": float(np.mean(poor)),
                               "any_other_flag": float(np.mean(other)),
                               "poor_fit_or_other": float(np.mean(poor | other))}
        log(f"{name}: POOR_FIT {np.mean(poor):.2f}, chi2 {describe_chi2(ins)}")

    rng = np.random.default_rng(seed + 11)
    for snr in (10.0, 50.0, 250.0):
        sig = 1.0 / snr_per_pixel(snr, width)
        flux = 1.0 + sig * rng.standard_normal((50, md.grid.npix))
        ood(f"flat continuum + noise, S/N {snr:g}",
            Spectrum(flux=flux * u.one, spectral_axis=wave,
                     uncertainty=StdDevUncertainty(np.broadcast_to(sig, flux.shape).copy())))
    sig0 = np.full((50, md.grid.npix), 0.02)
    ood("zero-mean noise, sigma 0.02 (empty fiber)",
        Spectrum(flux=sig0 * rng.standard_normal(sig0.shape) * u.one, spectral_axis=wave,
                 uncertainty=StdDevUncertainty(sig0)))
    r_ood = ood_resolving_power or (7000.0 if step < 0.2 else 2000.0)
    low = held.rerender(np.arange(n), r_ood)
    for snr in (10.0, 50.0, 250.0):
        ood(f"held-out at R = {r_ood:g}, S/N {snr:g}",
            noisy_spectrum(low, wave, width, snr, seed * 1000 + int(snr)))
    if example is not None and Path(example).is_file() and step < 0.2:
        ood("Sun, bundled example (HARPS, S/N 100)", Spectrum.read(example))
    for name, flux, _cov in sun_spectra(est, sun_harps, sun_uves):
        for snr in (50.0, 250.0):
            ood(f"Sun, {name}, S/N {snr:g}", sun_noisy(est, flux, snr, seed + int(snr)))
    report["seconds_total"] = time.perf_counter() - t0
    return report
