"""Write the validation report of a trained model as a documentation page (RST + PNG figures).

Runs the full estimator path (``Spectrum`` objects with StdDev uncertainties in, ``QTable``
out) on the model's held-out stars at several S/N per Angstrom and writes:

- bias, scatter and robust scatter per parameter at each S/N, for all stars, dwarfs
  (log g >= 3.5), giants and three [Fe/H] bins;
- 68 % / 95 % interval coverage, coverage curves and simulation-based-calibration rank
  histograms (`specutils_cinn.validation`);
- a comparison with the target precision of Ksoll et al. 2026 at S/N 250;
- out-of-domain behavior: the hottest/coolest held-out stars (and any outside the training
  ranges), spectra of another resolution, pure noise, and which quality flags fire;
- the Sun (HARPS, and UVES where it covers the model's range) degraded to the model's setup;
- figures: predicted vs true, scatter vs S/N, coverage curves, rank histograms, a corner plot.

Two kinds of held-out set:

``--training-set X.npz``
    A training set (``specutils_cinn.training.load_training_set``) already degraded to the
    model's grid; the held-out spectra are those of the model's ``validation_groups``.
``--grid X.h5``
    A synthesis grid (``read_grid``; HDF5 or the seed grid's .npz) at synthesis resolution;
    the held-out stars are its ``holdout`` rows (``--held-out holdout``, default) or the stars
    whose ``star_id`` is one of the model's ``validation_groups`` (``--held-out
    validation-groups``, for models trained on that grid). They are degraded here with
    `specutils_cinn.instruments.degrade` to the model's setup; v sin i is drawn uniformly within
    the model's range when the model predicts it, else 0.
``--grid DIR``
    A folder of v2 grid shards (``specutils_cinn.synthesis.shards.read_shards``; e.g.
    ``grid/4most-lte-v2``), the stars already binned at the setup's native pixels: the same
    stars, taken onto the model's pixels and rotated with ``BinnedRotation`` (and broadened by
    the training simulator's macroturbulence, if it drew one;
    `specutils_cinn.validation.shard_heldout`). Another resolution is then lower only.

Usage::

    python scripts/validation_report.py --model 4most-hr --training-set work/seed_hr_train.npz \\
        --snr 10 25 50 100 250 --output docs/validation/4most-hr.rst \\
        --figures docs/validation/4most-hr --threads 1

``--quick`` runs a few stars at one S/N with fewer draws (a smoke test; write it elsewhere).

The numbers come from the package (`specutils_cinn.validation.report` and
`specutils_cinn.validation.heldout`); this script holds the page: its figures and, one function
per section (`header_section`, `accuracy_section`, ... `sun_section`), its RST text, which is
why it is longer than a module of the package would be.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator, __version__
from specutils_cinn.calibration import PosteriorCalibration
from specutils_cinn.devices import cpu_name
from specutils_cinn.flags import QualityFlag
from specutils_cinn.instruments import snr_per_pixel
from specutils_cinn.validation import (
    coverage_curve,
    interval_coverage,
    rank_statistics,
    summary_statistics,
)
from specutils_cinn.validation.heldout import (
    UVES_R,
    HeldOut,
    Run,
    cross_fitted_estimators,
    heldout_from_grid,
    heldout_from_training_set,
    model_setup,
    noisy_spectrum,
    raw_coverage,
    run_estimator,
    run_heldout,
    sun_noisy,
    sun_spectra,
)
from specutils_cinn.validation.report import (
    GOALS_COVERAGE_TOLERANCE,
    GOALS_MIN_FE_H,
    SUN,
    TARGET_SNR,
    TARGETS,
    V2_GOALS,
    flag_fractions,
    flag_names,
    goal_verdict,
    pick_snr,
    population_masks,
)
from specutils_cinn.validation.report import format_value as fmt
from specutils_cinn.validation.report import parameter_label as label
from specutils_cinn.wavelength_grid import GridSegment


# ============================================================================ pure helpers
def list_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "", indent: str = ""
) -> str:
    """An RST ``list-table`` with one header row."""
    lines = [f"{indent}.. list-table:: {title}".rstrip(), f"{indent}   :header-rows: 1", ""]
    for row in [list(header), *[list(r) for r in rows]]:
        if len(row) != len(header):
            raise ValueError(f"row {row} has {len(row)} cells, header has {len(header)}")
        for k, cell in enumerate(row):
            text = str(cell) if str(cell) != "" else " "
            lines.append(f"{indent}   {'* -' if k == 0 else '  -'} {text}")
    return "\n".join(lines) + "\n"


def heading(text: str, char: str, over: bool = False) -> str:
    """An RST section title."""
    bar = char * max(len(text), 3)
    return (f"{bar}\n{text}\n{bar}\n" if over else f"{text}\n{bar}\n") + "\n"


# ============================================================================ figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "figure.dpi": 72})
    return plt


def _save(fig: Any, path: Path, dpi: int) -> str:
    fig.savefig(path, dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    size = path.stat().st_size
    if size > 150_000:
        print(f"warning: {path} is {size / 1e3:.0f} kB", file=sys.stderr)
    return path.name


def _grid_shape(n: int) -> tuple[int, int]:
    ncol = min(4, n)
    return int(np.ceil(n / ncol)), ncol


def fig_pred_vs_true(runs: dict[float, Run], params: list[str], snrs: list[float], path: Path,
                     dpi: int) -> str:
    plt = _plt()
    nr, nc = _grid_shape(len(params))
    fig, axes = plt.subplots(nr, nc, figsize=(2.6 * nc, 2.5 * nr), squeeze=False)
    colors = ["tab:orange", "tab:blue", "tab:green", "tab:red"]
    for j, p in enumerate(params):
        ax = axes.flat[j]
        for k, snr in enumerate(snrs):
            r = runs[snr]
            ax.plot(r.truth[:, j], np.asarray(r.table[p].value), ".", ms=3, alpha=0.6,
                    color=colors[k % 4], label=f"S/N {snr:g}")
        lo = np.nanmin(runs[snrs[0]].truth[:, j])
        hi = np.nanmax(runs[snrs[0]].truth[:, j])
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set_title(label(p))
        ax.set_xlabel("true")
        ax.set_ylabel("posterior median")
    for ax in axes.flat[len(params):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)


def fig_scatter_vs_snr(stats: dict[float, Any], params: list[str], path: Path, dpi: int) -> str:
    plt = _plt()
    nr, nc = _grid_shape(len(params))
    fig, axes = plt.subplots(nr, nc, figsize=(2.6 * nc, 2.3 * nr), squeeze=False)
    snrs = sorted(stats)
    for j, p in enumerate(params):
        ax = axes.flat[j]
        get = {c: [stats[s][c][j] for s in snrs] for c in
               ("scatter", "robust_scatter", "bias", "median_std")}
        ax.plot(snrs, get["scatter"], "o-", ms=3, label="scatter (std)")
        ax.plot(snrs, get["robust_scatter"], "s-", ms=3, label="robust scatter")
        ax.plot(snrs, np.abs(get["bias"]), "^:", ms=3, label="|bias|")
        ax.plot(snrs, get["median_std"], "--", label="median posterior std")
        if p in TARGETS:
            ax.plot([TARGET_SNR], [TARGETS[p]], "r*", ms=8, label="target (S/N 250)")
        ax.set_xscale("log")
        ax.set_xlabel("S/N per A")
        ax.set_title(f"{label(p)} [{stats[snrs[0]]['unit'][j]}]")
        ax.set_ylim(bottom=0)
    for ax in axes.flat[len(params):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path, dpi)


def fig_coverage(curves: dict[float, Any], params: list[str], path: Path, dpi: int) -> str:
    plt = _plt()
    snrs = list(curves)
    fig, axes = plt.subplots(1, len(snrs), figsize=(3.2 * len(snrs), 3.0), squeeze=False)
    for ax, snr in zip(axes.flat, snrs, strict=True):
        c = curves[snr]
        for p in params:
            ax.plot(c["nominal"], c[p], "-", label=label(p))
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_title(f"S/N {snr:g}")
        ax.set_xlabel("nominal central interval")
        ax.set_ylabel("fraction of true values inside")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path, dpi)


def fig_ranks(ranks: dict[float, Any], params: list[str], path: Path, dpi: int) -> str:
    plt = _plt()
    snrs = list(ranks)
    d = len(params)
    fig, axes = plt.subplots(len(snrs), d, figsize=(1.5 * d, 1.5 * len(snrs) + 0.3),
                             squeeze=False, sharey="row")
    for i, snr in enumerate(snrs):
        rs = ranks[snr]
        frac_edges = (rs.bin_edges + 0.5) / (rs.n_samples + 1)
        for j, p in enumerate(params):
            ax = axes[i, j]
            ax.stairs(rs.histogram[:, j], frac_edges, fill=True, alpha=0.6)
            e = rs.expected[:, j]
            ax.stairs(e + np.sqrt(e), frac_edges, color="k", lw=0.5)
            ax.stairs(np.maximum(e - np.sqrt(e), 0), frac_edges, color="k", lw=0.5)
            ax.set_xticks([0, 0.5, 1])
            if i == 0:
                ax.set_title(label(p))
            if j == 0:
                ax.set_ylabel(f"S/N {snr:g}")
            ax.text(0.5, 0.02, f"p={rs.p_value[j]:.1g}", transform=ax.transAxes, ha="center",
                    fontsize=6)
    fig.supxlabel("rank / n_samples", fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)


def fig_corner(draws: np.ndarray, truth: np.ndarray, params: list[str], title: str, path: Path,
               dpi: int) -> str:
    """A small corner plot: marginal histograms on the diagonal, 2-D histograms below."""
    plt = _plt()
    d = len(params)
    fig, axes = plt.subplots(d, d, figsize=(1.2 * d, 1.2 * d))
    lims = []
    for j in range(d):
        lo, hi = np.percentile(draws[:, j], [0.5, 99.5])
        lo, hi = min(lo, truth[j]), max(hi, truth[j])
        pad = 0.05 * (hi - lo + 1e-9)
        lims.append((lo - pad, hi + pad))
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(draws[:, j], bins=30, range=lims[j], color="tab:blue", alpha=0.7)
                ax.axvline(truth[j], color="r", lw=0.8)
                ax.set_yticks([])
            else:
                ax.hist2d(draws[:, j], draws[:, i], bins=25, range=[lims[j], lims[i]],
                          cmap="Blues")
                ax.plot(truth[j], truth[i], "r+", ms=6)
                ax.set_ylim(lims[i])
            ax.set_xlim(lims[j])
            ax.tick_params(labelsize=5)
            if i < d - 1:
                ax.set_xticklabels([])
            else:
                ax.set_xlabel(label(params[j]), fontsize=7)
            if j > 0 or i == 0:
                ax.set_yticklabels([]) if i != j else None
            else:
                ax.set_ylabel(label(params[i]), fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.subplots_adjust(wspace=0.08, hspace=0.08, left=0.08, bottom=0.08, right=0.99, top=0.95)
    return _save(fig, path, dpi)


# ============================================================================ report
def hardware_note(device: str, threads: int) -> str:
    cpu = cpu_name()
    gpu = ""
    if device != "cpu" and torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name(0)}"
    return (f"{cpu} ({os.cpu_count()} logical cores, torch using {threads} thread(s)){gpu}; "
            f"device {device}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"specutils-cinn {__version__}")


def stats_rows(params: list[str], stats: Any, cov: Any, rs: Any) -> list[list[str]]:
    rows = []
    for j, p in enumerate(params):
        rows.append([
            label(p), stats["unit"][j],
            fmt(p, stats["bias"][j], "signed"), fmt(p, stats["scatter"][j]),
            fmt(p, stats["robust_scatter"][j]), fmt(p, stats["median_std"][j]),
            fmt(p, cov["coverage_68"][j], "fraction"), fmt(p, cov["coverage_95"][j], "fraction"),
            f"{rs.p_value[j]:.2g}",
        ])
    return rows


STATS_HEADER = ["parameter", "unit", "bias", "scatter", "robust scatter", "median post. std",
                "in 68 %", "in 95 %", "rank p"]


@dataclass
class Page:
    """What the sections of one validation page share: the model, its held-out set, the runs.

    The held-out runs (`run_snrs`) fill ``runs``, ``stats``, ``covs``, ``ranks``, ``curves``,
    ``pops`` and ``raw_covs`` (keyed by S/N); every run appends its flags to ``flag_rows``.
    """

    args: argparse.Namespace
    est: CINNParameterEstimator
    held: HeldOut
    snrs: list[float]
    cross: Any
    t_start: float
    runs: dict[float, Run] = field(default_factory=dict)
    stats: dict[float, Any] = field(default_factory=dict)
    covs: dict[float, Any] = field(default_factory=dict)
    ranks: dict[float, Any] = field(default_factory=dict)
    curves: dict[float, Any] = field(default_factory=dict)
    pops: dict[float, Any] = field(default_factory=dict)
    raw_covs: dict[float, Any] = field(default_factory=dict)
    pop_masks: dict[str, np.ndarray] = field(default_factory=dict)
    flag_rows: list[tuple[str, np.ndarray]] = field(default_factory=list)

    @property
    def md(self) -> Any:
        return self.est.model.metadata

    @property
    def params(self) -> list[str]:
        return self.md.parameter_names

    @property
    def n_spec(self) -> int:
        return len(self.held.truth)

    @property
    def n_star(self) -> int:
        return len(np.unique(self.held.star))

    @property
    def ood_snr(self) -> float:
        return max(self.snrs)

    def run_kw(self) -> dict[str, Any]:
        """Keywords of every estimator run: draws, seed, device."""
        return {"n_samples": self.args.n_samples, "seed": self.args.seed,
                "device": self.args.device}

    def elapsed(self) -> str:
        return f"{time.perf_counter() - self.t_start:.0f} s"


def load_heldout(args: argparse.Namespace, est: CINNParameterEstimator) -> HeldOut:
    """The held-out set of ``--training-set`` or ``--grid`` (12 spectra with ``--quick``)."""
    if args.training_set:
        held = heldout_from_training_set(est, args.training_set)
    else:
        held = heldout_from_grid(est, args.grid, args.held_out, args.vsini_per_star, args.seed)
    if args.quick:
        take = np.linspace(0, len(held.truth) - 1, min(12, len(held.truth))).astype(int)
        held.flux, held.truth, held.star = held.flux[take], held.truth[take], held.star[take]
        held.extra = {k: v[take] for k, v in held.extra.items()}
        base = held.rerender
        held.rerender = None if base is None else (lambda sel, r, base=base: base(take[sel], r))
    return held


def run_snrs(page: Page) -> None:
    """The held-out spectra at every S/N: the runs and their statistics."""
    held, params, md = page.held, page.params, page.md
    page.pop_masks = population_masks(
        held.truth[:, params.index("logg")], held.truth[:, params.index("fe_h")],
        held.truth[:, params.index("teff")] if "teff" in params else None)
    for snr in page.snrs:
        spec = noisy_spectrum(held.flux, md.grid.wavelength, md.grid.pixel_width, snr,
                              page.args.seed * 1000 + int(snr))
        r = run_heldout(page.est, page.cross, spec, held.star, f"held-out, S/N {snr:g}",
                        held.truth, **page.run_kw())
        page.runs[snr] = r
        if md.posterior_calibration is not None:
            page.raw_covs[snr] = raw_coverage(page.est, spec, held.truth, **page.run_kw())
        page.stats[snr] = summary_statistics(held.truth, r.table, params)
        page.covs[snr] = interval_coverage(held.truth, r.table, (0.68, 0.95), params)
        page.ranks[snr] = rank_statistics(held.truth, r.samples, parameters=params)
        page.curves[snr] = coverage_curve(held.truth, r.samples, parameters=params)
        page.pops[snr] = {k: summary_statistics(held.truth[m], r.table[m], params)
                          for k, m in page.pop_masks.items() if m.any()}
        page.flag_rows.append((f"held-out, S/N {snr:g}", np.asarray(r.table["flags"])))
        print(f"  S/N {snr:g}: done ({page.elapsed()})")


def header_section(page: Page, runtime: float) -> str:
    """Title, the table of what was run, and how to read the numbers."""
    args, est, md, params = page.args, page.est, page.md, page.params
    cmd = "python scripts/validation_report.py " + shlex.join(sys.argv[1:])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    L: list[str] = []
    title = f"Validation of {md.full_name}"
    # v2 and later pages carry their major version, so that both generations can be in the docs
    major = int(str(md.version).split(".")[0])
    L.append(f".. _validation-{md.name}{'' if major < 2 else f'-v{major}'}:\n\n")
    L.append(heading(title, "*", over=True))
    L.append(
        ".. This page is generated by scripts/validation_report.py; do not edit it by hand.\n\n"
        "Regenerated with::\n\n"
        f"    {cmd}\n\n"
    )
    L.append(list_table(["item", "value"], [
        ["model", f"``{md.full_name}`` (name ``{md.name}``, version {md.version})"],
        ["weights SHA-256", f"``{est.model.sha256}``"],
        ["description", md.description],
        ["parameters", ", ".join(f"``{p}``" for p in params)],
        ["S/N range seen in training", f"{md.snr_range[0]:g}-{md.snr_range[1]:g} per A"],
        ["held-out set", page.held.description],
        ["held-out stars / spectra", f"{page.n_star} / {page.n_spec}"],
        ["noise", "the training noise model (``instruments.draw_noise``): photon-like Gaussian "
                  "noise at each S/N per Angstrom, uncertainty from the noisy flux (floor "
                  "0.01), StdDev uncertainties, one realization"],
        ["posterior draws", f"{args.n_samples} per spectrum, seed {args.seed}"],
        ["posterior calibration", calibration_note(md.posterior_calibration, page.cross)],
        ["date", date],
        ["hardware", hardware_note(est.device.type if args.device == "auto" else args.device,
                                   args.threads)],
        ["runtime", f"{runtime:.0f} s for the whole report"],
    ]))
    if args.quick:
        L.append("\n.. warning::\n\n   ``--quick`` run: a few stars at one S/N, not a "
                 "validation.\n")
    L.append("\n")
    L.append(
        "All numbers compare the posterior median (``predict``) with the true label: **bias** "
        "is the median residual, **scatter** their standard deviation, **robust scatter** "
        "1.4826 times their median absolute deviation; **median post. std** is the median "
        "posterior standard deviation (a calibrated model has it close to the scatter); "
        "**in 68 % / in 95 %** are the fractions of true values inside the central 68 % and "
        "95 % posterior intervals; **rank p** is the chi-square p-value of the simulation-based "
        "calibration rank histogram against a flat one (small: miscalibrated). The held-out "
        "stars are synthetic spectra from the same grid physics as the training set, so these "
        "are *internal* precisions; the Sun below is the only real star.\n\n"
    )
    return "".join(L)


def accuracy_section(page: Page, rel: str, figs: dict[str, str], fig_snrs: list[float]) -> str:
    """Bias, scatter and coverage per S/N, with the predicted-vs-true and scatter figures."""
    L = [heading("Accuracy and calibration per S/N", "=")]
    for snr in page.snrs:
        L.append(list_table(STATS_HEADER, stats_rows(page.params, page.stats[snr],
                                                     page.covs[snr], page.ranks[snr]),
                            f"S/N {snr:g} per A, {page.n_spec} spectra"))
        L.append("\n")
    L.append(figure(f"{rel}/{figs['pred']}", "Posterior median against the true label "
                    f"(S/N {', '.join(f'{s:g}' for s in fig_snrs)})."))
    L.append(figure(f"{rel}/{figs['snr']}", "Scatter, robust scatter, absolute bias and median "
                    "posterior standard deviation against S/N; red star: target at S/N 250."))
    return "".join(L)


def targets_section(page: Page) -> str:
    """The scatter at S/N 250 against the target precision of the production models."""
    params = page.params
    L = [heading(f"Comparison with the target precision (S/N {TARGET_SNR:g})", "=")]
    L.append(
        "Target precisions for the production models, as quoted in GitHub issue 4 from Ksoll "
        "et al. (2026); we have not checked which statistic the paper quotes and compare with "
        "our scatter (standard deviation, the stricter number) and robust scatter. "
        "A parameter passes when the scatter is at or below the target.\n\n"
    )
    if TARGET_SNR in page.stats:
        st = page.stats[TARGET_SNR]
        trow = []
        for p, target in TARGETS.items():
            if p in params:
                j = params.index(p)
                sc, rb = st["scatter"][j], st["robust_scatter"][j]
                verdict = "**pass**" if sc <= target else (
                    "fail (robust scatter passes)" if rb <= target else "**fail**")
                trow.append([label(p), fmt(p, target), fmt(p, sc), fmt(p, rb), verdict])
            else:
                trow.append([label(p), fmt(p, target), "--", "--", "not predicted by this model"])
        L.append(list_table(["parameter", "target", "scatter", "robust scatter", "verdict"],
                            trow, f"S/N {TARGET_SNR:g}"))
    else:
        L.append(f"Not run at S/N {TARGET_SNR:g}.\n")
    L.append("\n")
    return "".join(L)


def goals_section(page: Page, setup: str) -> str:
    """The v2 goals of GitHub issue 12 at S/N 250: scatter and coverage, metal-poor apart."""
    goals, params = V2_GOALS[setup], page.params
    L = [heading(f"The v2 goals (4MOST {setup.upper()}, S/N {TARGET_SNR:g})", "=")]
    if TARGET_SNR not in page.runs:
        return "".join(L) + f"Not run at S/N {TARGET_SNR:g}.\n\n"
    truth, table = page.held.truth, page.runs[TARGET_SNR].table
    fe_h = truth[:, params.index("fe_h")]
    with_goal = fe_h > GOALS_MIN_FE_H
    L.append(
        f"The goals of GitHub issue 12 for the v2 models apply to the held-out stars with "
        f"[Fe/H] > {GOALS_MIN_FE_H:g}; the stars at or below it are reported next to them "
        "(no goal; the published cINN's errors grow there). A parameter meets its goal when "
        "the scatter (standard deviation) is at or below it. Coverage should lie within "
        f"{GOALS_COVERAGE_TOLERANCE * 100:.0f} points of each interval's level; the binomial "
        "error over stars is given (the spectra of one star are not independent).\n\n")
    rows = []
    for name, m in ((f"[Fe/H] > {GOALS_MIN_FE_H:g}", with_goal),
                    (f"[Fe/H] <= {GOALS_MIN_FE_H:g}", ~with_goal)):
        if not m.any():
            continue
        st = summary_statistics(truth[m], table[m], params)
        cov = interval_coverage(truth[m], table[m], (0.68, 0.95), params)
        n_star = len(np.unique(page.held.star[m]))
        se = [np.sqrt(lv * (1 - lv) / n_star) for lv in (0.68, 0.95)]
        for p in params:
            j = params.index(p)
            goal = goals.get(p)
            sc, rb = st["scatter"][j], st["robust_scatter"][j]
            c68, c95 = float(cov["coverage_68"][j]), float(cov["coverage_95"][j])
            verdict = ("--" if goal is None or m is not with_goal
                       else goal_verdict(sc, goal, c68, c95))
            rows.append([name if j == 0 else "", f"{n_star}" if j == 0 else "", label(p),
                         "--" if goal is None else fmt(p, goal), fmt(p, sc), fmt(p, rb),
                         f"{c68:.2f} +- {se[0]:.2f}", f"{c95:.2f} +- {se[1]:.2f}", verdict])
    L.append(list_table(["stars", "n", "parameter", "goal", "scatter", "robust scatter",
                         "68 % coverage", "95 % coverage", "verdict"], rows,
                        f"S/N {TARGET_SNR:g}"))
    L.append("\n")
    return "".join(L)


def populations_section(page: Page) -> str:
    """Bias and scatter of dwarfs, giants and three [Fe/H] bins at every S/N."""
    L = [heading("By population", "=")]
    L.append(
        "Cells are *bias / scatter / robust scatter* over the held-out spectra of each "
        "population (true labels; n in the column header). Small populations give noisy "
        "numbers.\n\n"
    )
    for snr in page.snrs:
        pop = page.pops[snr]
        header = ["parameter"] + [f"{k} (n={int(page.pop_masks[k].sum())})" for k in pop]
        rows = []
        for j, p in enumerate(page.params):
            rows.append([label(p)] + [
                f"{fmt(p, s['bias'][j], 'signed')} / {fmt(p, s['scatter'][j])} / "
                f"{fmt(p, s['robust_scatter'][j])}" for s in pop.values()])
        L.append(list_table(header, rows, f"S/N {snr:g}"))
        L.append("\n")
    return "".join(L)


def calibration_section(page: Page, rel: str, figs: dict[str, str]) -> str:
    """Coverage, rank statistics and the model's posterior calibration."""
    params, snrs, covs, ranks = page.params, page.snrs, page.covs, page.ranks
    cal = page.md.posterior_calibration
    L = [heading("Calibration", "=")]
    if cal is not None:
        L.append(
            "The model's posterior calibration (:ref:`posterior-calibration`) stretches each "
            "posterior about its median: half width sqrt((scale w)^2 + floor^2) for a network "
            "half width w"
            + (", where a scale given at several widths is interpolated in log w between them "
               "(a scale below 1 narrows). " if cal.width_scale else ". ")
            + ("The coverage in the tables, figures and rank statistics on this page is "
               "*cross-fitted*: the stars of each fold get the calibration fitted on the other "
               "fold's stars (" + str(cal.info["cross_validation"]["rule"]) + "), so no star "
               "is scored with a calibration fitted on itself. "
               if page.cross is not None else
               "The coverage on this page uses the model's calibration as shipped. ")
            + "The last table gives the network's own (uncalibrated) coverage. ")
    se68, se95 = (np.sqrt(lv * (1 - lv) / max(page.n_star, 1)) for lv in (0.68, 0.95))
    L.append(
        f"With {page.n_star} stars a coverage fraction is uncertain by about +-{se68:.2f} (68 %) "
        f"and +-{se95:.2f} (95 %) (binomial over stars; the spectra of one star share its "
        "emulator mismatch and are not independent).\n\n")
    if cal is not None:
        s_cal, f_cal = cal.factors(params)
        L.append(list_table(
            ["parameter", "scale", "floor"],
            [[label(p), (" ".join(f"{k:.2f} at {fmt(p, w)}" for w, k in cal.width_scale[p])
                         if p in cal.width_scale else f"{s_cal[j]:.2f}"), fmt(p, f_cal[j])]
             for j, p in enumerate(params)],
            "Posterior calibration shipped with the model (fitted on all held-out stars)"))
        L.append("\n")
    rows = []
    for j, p in enumerate(params):
        rows.append([label(p)] + [
            f"{covs[s]['coverage_68'][j]:.2f} / {covs[s]['coverage_95'][j]:.2f}" for s in snrs])
    L.append(list_table(["parameter"] + [f"S/N {s:g}" for s in snrs], rows,
                        "Fraction of true values inside the central 68 % / 95 % intervals"))
    L.append("\n")
    rows = []
    for j, p in enumerate(params):
        rows.append([label(p)] + [
            f"{ranks[s].p_value[j]:.2g} ({ranks[s].mean_fraction[j]:.2f}, "
            f"{ranks[s].std_fraction[j]:.2f})" for s in snrs])
    L.append(list_table(
        ["parameter"] + [f"S/N {s:g}" for s in snrs], rows,
        "Rank statistics: chi-square p-value (mean, std of rank / n_samples; calibrated: 0.50, "
        "0.29)"))
    L.append("\n")
    if page.raw_covs:
        rows = [[label(p)] + [f"{page.raw_covs[s][j, 0]:.2f} / {page.raw_covs[s][j, 1]:.2f}"
                              for s in snrs] for j, p in enumerate(params)]
        L.append(list_table(["parameter"] + [f"S/N {s:g}" for s in snrs], rows,
                            "Uncalibrated network (``calibrated=False``): fraction of true values "
                            "inside the central 68 % / 95 % intervals"))
        L.append("\n")
    L.append(
        "A standard deviation of the normalized ranks above 0.29 means over-confident "
        "posteriors (U-shaped histogram), below 0.29 under-confident ones (hump); a mean off "
        "0.5 means a bias (above 0.5: the posterior lies below the truth). The held-out spectra "
        "are several v sin i realizations of the same stars, so they are not fully independent "
        "and the p-values are optimistic about significance.\n\n"
    )
    L.append(figure(f"{rel}/{figs['cov']}", "Empirical against nominal coverage of the central "
                    "posterior intervals; calibrated posteriors follow the dashed diagonal, "
                    "over-confident ones lie below it."))
    L.append(figure(f"{rel}/{figs['rank']}", "Simulation-based calibration rank histograms "
                    "(Talts et al. 2018); black lines: expected count +- 1 sigma for a "
                    "calibrated posterior."))
    return "".join(L)


def edges_section(page: Page) -> str:
    """The coolest and hottest held-out spectra, and any outside the training ranges."""
    held, params, md = page.held, page.params, page.md
    lo_r, hi_r = md.ranges[:, 0], md.ranges[:, 1]
    outside = ((held.truth < lo_r) | (held.truth > hi_r)).any(axis=1)
    teff = held.truth[:, params.index("teff")]
    order = np.argsort(teff)
    k = min(4, len(order) // 2)
    extremes = np.unique(np.concatenate([order[:k], order[-k:], np.flatnonzero(outside)]))
    ext_run = page.runs[page.ood_snr]
    ext_rows = []
    for i in extremes:
        row = [str(held.star[i]), "yes" if outside[i] else "no"]
        for p in ("teff", "logg", "fe_h"):
            j = params.index(p)
            row.append(f"{fmt(p, held.truth[i, j])} / {fmt(p, ext_run.table[p].value[i])}")
        row.append(flag_names(int(ext_run.table["flags"][i])))
        ext_rows.append(row)
    edge_all = {s: flag_fractions(page.runs[s].table["flags"])["PARAMETER_AT_EDGE"]
                for s in page.snrs}
    L = [heading("Edges of the training domain", "-")]
    L.append(
        f"The {k} coolest and {k} hottest held-out spectra at S/N {page.ood_snr:g} "
        f"({int(outside.sum())} held-out spectra lie outside the model's training ranges). "
        "Cells are *true / posterior median*. Over all held-out spectra ``PARAMETER_AT_EDGE`` "
        "fires for "
        + ", ".join(f"{100 * v:.0f} % at S/N {s:g}" for s, v in edge_all.items()) + ".\n\n"
    )
    L.append(list_table(["star", "outside ranges", "Teff", "log g", "[Fe/H]", "flags"],
                        ext_rows))
    L.append("\n")
    return "".join(L)


def resolution_section(page: Page) -> str:
    """All held-out spectra re-made at a lower (and, from a grid, a higher) resolving power."""
    args, est, held, params, md = page.args, page.est, page.held, page.params, page.md
    res_rows = []
    res_notes = []
    if held.rerender is not None:
        r_min = min(float(np.min(setup_r(est, seg))) for seg in md.grid.segments)
        low = args.ood_low_r or (7000.0 if r_min > 10000 else round(r_min / 2, -2))
        high = args.ood_high_r or (40000.0 if r_min > 10000 else 20000.0)
        variants = [("model resolution", None), (f"R = {low:g}", low)]
        if held.higher_resolution_possible:
            variants.append((f"R = {high:g}", high))
        else:
            res_notes.append(
                f"A higher resolution (R = {high:g}) cannot be made from spectra already "
                "at the model's resolution (a training set or grid shards); run with ``--grid`` "
                "and a synthesis grid file to test it. The lower resolution is made by a "
                "Gaussian of the quadrature difference of the resolving powers."
            )
        sel = np.arange(len(held.truth))
        for name, r in variants:
            flux = held.flux if r is None else held.rerender(sel, r)
            spec = noisy_spectrum(flux, md.grid.wavelength, md.grid.pixel_width, page.ood_snr,
                                  args.seed * 1000 + 7)
            rr = run_heldout(est, page.cross, spec, held.star, name, held.truth,
                             **page.run_kw())
            st = summary_statistics(held.truth, rr.table, params)
            cv = interval_coverage(held.truth, rr.table, (0.68,), params)
            fr = flag_fractions(rr.table["flags"])
            row = [name]
            for p in ("teff", "logg", "fe_h"):
                j = params.index(p)
                row.append(f"{fmt(p, st['bias'][j], 'signed')} / {fmt(p, st['robust_scatter'][j])}"
                           f" / {cov_fmt(cv['coverage_68'][j])}")
            row.append(f"{1 - fr['none']:.2f}")
            row.append(f"{fr['PARAMETER_AT_EDGE']:.2f}")
            res_rows.append(row)
            page.flag_rows.append((f"held-out at {name}, S/N {page.ood_snr:g}",
                                   np.asarray(rr.table["flags"])))
        print(f"  resolution tests done ({page.elapsed()})")
    L = [heading("Another resolution", "-")]
    L.append(f"The model's resolving power: {describe_r(est)}. ")
    if res_rows:
        L.append(
            f"All held-out spectra re-made at another resolving power (same stars, same "
            f"v sin i), S/N {page.ood_snr:g}. Cells are *bias / robust scatter / in 68 %*; then "
            "the fraction with any flag and with ``PARAMETER_AT_EDGE``. "
            + " ".join(res_notes) + "\n\n")
        L.append(list_table(["spectra", "Teff", "log g", "[Fe/H]", "any flag",
                             "PARAMETER_AT_EDGE"], res_rows))
    else:
        L.append("Not run.\n")
    L.append("\n")
    return "".join(L)


def noise_section(page: Page) -> str:
    """Spectra of pure Gaussian noise with correct uncertainties."""
    args, md = page.args, page.md
    width, wave = md.grid.pixel_width, md.grid.wavelength
    rng = np.random.default_rng(args.seed + 11)
    n_noise = 12 if args.quick else 50
    noise_sets = []
    for snr in (50.0, 250.0):
        sig = 1.0 / snr_per_pixel(snr, width)
        flux = 1.0 + sig * rng.standard_normal((n_noise, md.grid.npix))
        noise_sets.append((f"flat continuum + Gaussian noise, S/N {snr:g}", flux,
                           np.broadcast_to(sig, flux.shape)))
    sig0 = np.full(md.grid.npix, 0.02)
    noise_sets.append(("zero-mean Gaussian noise, sigma 0.02 (empty fiber)",
                       sig0 * rng.standard_normal((n_noise, md.grid.npix)),
                       np.broadcast_to(sig0, (n_noise, md.grid.npix))))
    noise_rows = []
    for name, flux, sig in noise_sets:
        spec = Spectrum(flux=flux * u.one, spectral_axis=wave,
                        uncertainty=StdDevUncertainty(np.array(sig)))
        t = run_estimator(page.est, spec, name, None, **page.run_kw()).table
        row = [name]
        for p in ("teff", "logg", "fe_h"):
            v = np.asarray(t[p].value)
            s = np.asarray(t[f"{p}_std"].value)
            row.append(f"{fmt(p, np.nanmedian(v))} ({fmt(p, np.nanmin(v))}..{fmt(p, np.nanmax(v))}"
                       f"), std {fmt(p, np.nanmedian(s))}")
        fr = flag_fractions(t["flags"])
        row.append(f"{1 - fr['none']:.2f}")
        row.append(", ".join(f"{k} {v:.2f}" for k, v in fr.items() if v > 0 and k != "none")
                   or "none")
        noise_rows.append(row)
        page.flag_rows.append((name, np.asarray(t["flags"])))
    L = [heading("Pure noise", "-")]
    L.append(
        f"{n_noise} spectra of pure Gaussian noise on the model grid, with correct "
        "uncertainties. Cells: median (min..max) of the posterior medians, and the median "
        "posterior standard deviation.\n\n")
    L.append(list_table(["input", "Teff", "log g", "[Fe/H]", "any flag", "flags fired"],
                        noise_rows))
    L.append("\n")
    return "".join(L)


def sun_section(page: Page) -> str:
    """Solar spectra degraded to the model's setup."""
    args, est, params = page.args, page.est, page.params
    sun_rows = []
    sun_snrs = [50.0] if args.quick else [50.0, 250.0]
    for name, flux, _cov in sun_spectra(est, args.sun_harps, args.sun_uves):
        for snr in sun_snrs:
            spec = sun_noisy(est, flux, snr, args.seed + int(snr))
            t = run_estimator(est, spec, name, None, **page.run_kw()).table
            row = [name, f"{snr:g}", f"{float(t['coverage'][0]):.2f}"]
            for p in params:
                v = float(t[p].value[0])
                lo_q, hi_q = float(t[f"{p}_p16"].value[0]), float(t[f"{p}_p84"].value[0])
                cell = f"{fmt(p, v)} [{fmt(p, lo_q)}, {fmt(p, hi_q)}]"
                if p in SUN:
                    cell += f" ({fmt(p, v - SUN[p], 'signed')})"
                row.append(cell)
            row.append(flag_names(int(t["flags"][0])))
            sun_rows.append(row)
            page.flag_rows.append((f"Sun, {name}, S/N {snr:g}", np.asarray(t["flags"])))
    L = [heading("The Sun", "=")]
    L.append(
        "Solar spectra (HARPS via Ganymede, R ~ 115,000; UVES, R ~ 65,000-110,000, taken as "
        f"{UVES_R:g}) degraded to the model's setup with ``instruments.degrade`` (the "
        "quadrature difference of resolutions), binned onto the model grid where they cover "
        "it, with photon-like noise relative to each segment's continuum (as "
        "``scripts/make_example_spectrum.py``); pixels not covered are NaN. HARPS' "
        "chip gap (5304.7-5337.6 A, stored as zeros, inside the HR green arm) is masked, "
        "together with every model pixel the line-spread function carries it to; the row "
        "*chip gap not masked* shows what happens when it is not (as in the bundled example "
        "spectrum). Cells: "
        "posterior median [16th, 84th percentile] (median minus the reference). Reference: "
        f"Teff {SUN['teff']:g} K, log g {SUN['logg']:g}, [Fe/H] {SUN['fe_h']:.2f}.\n\n")
    if sun_rows:
        L.append(list_table(["spectrum", "S/N", "coverage"] + [label(p) for p in params]
                            + ["flags"], sun_rows))
    else:
        L.append("No solar spectrum was found.\n")
    L.append("\n")
    return "".join(L)


def ood_section(page: Page, edges: str, resolution: str, noise: str) -> str:
    """The out-of-domain tests (already run) and which flags fired on every set of spectra."""
    est = page.est
    L = [heading("Out-of-domain behavior", "=")]
    L.append(
        "The estimator's domain checks are the quality flags of :ref:`output-table`: "
        "coverage, S/N, a posterior median near a training-range edge"
        + (" and, from the model's spectrum emulator, the goodness of fit (``POOR_FIT``) and "
           "the significance of the stellar features (``NO_FEATURES``)"
           if est.model.metadata.emulator is not None else
           " (this model ships no emulator, so ``POOR_FIT`` and ``NO_FEATURES`` never fire)")
        + ". These tests show what they catch.\n\n"
    )
    L += [edges, resolution, noise]
    L.append(heading("Which flags fire", "-"))
    fl_names = [fl.name for fl in QualityFlag if int(fl)]
    rows = []
    for name, flags in page.flag_rows:
        fr = flag_fractions(flags)
        rows.append([name, str(len(flags))] + [f"{fr[n]:.2f}" if fr[n] else "0" for n in fl_names]
                    + [f"{fr['none']:.2f}"])
    L.append(list_table(["spectra", "n"] + [f"``{n}``" for n in fl_names] + ["no flag"], rows,
                        "Fraction of spectra with each flag"))
    L.append("\n")
    if est.model.metadata.emulator is None:
        L.append(
            "Without an emulator no flag detects a spectrum that simply does not look like the "
            "training spectra (wrong resolution, pure noise, wrong physics): the flags only "
            "check coverage, S/N and whether a posterior median sits at a training-range "
            "edge.\n\n")
    return "".join(L)


def make_figures(page: Page, figdir: Path, fig_snrs: list[float]) -> dict[str, str]:
    """The page's figures (file names in ``figdir``)."""
    params, held, runs, dpi = page.params, page.held, page.runs, page.args.dpi
    figs = {}
    figs["pred"] = fig_pred_vs_true(runs, params, fig_snrs, figdir / "pred_vs_true.png", dpi)
    figs["snr"] = fig_scatter_vs_snr(page.stats, params, figdir / "scatter_vs_snr.png", dpi)
    figs["cov"] = fig_coverage({s: page.curves[s] for s in fig_snrs}, params,
                               figdir / "coverage_curves.png", dpi)
    figs["rank"] = fig_ranks({s: page.ranks[s] for s in fig_snrs}, params,
                             figdir / "rank_histograms.png", dpi)
    corner_snr = fig_snrs[0]
    cr = runs[corner_snr]
    draws = np.stack([np.asarray(cr.samples[p].value) for p in params], axis=2)
    teff = held.truth[:, params.index("teff")]
    fe = held.truth[:, params.index("fe_h")]
    star_i = int(np.argmin(np.abs(teff - 5800) / 300 + np.abs(fe + 0.3)))
    figs["corner"] = fig_corner(
        draws[star_i], held.truth[star_i], params,
        f"held-out star {held.star[star_i]} at S/N {corner_snr:g} ({page.args.n_samples} draws; "
        "red: truth)", figdir / "corner.png", dpi)
    return figs


def build_report(args: argparse.Namespace) -> None:
    """Run every test of the page, then write its RST (one function per section)."""
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    est = CINNParameterEstimator.from_pretrained(args.model, device=args.device)
    md = est.model.metadata
    out = Path(args.output)
    figdir = Path(args.figures)
    out.parent.mkdir(parents=True, exist_ok=True)
    figdir.mkdir(parents=True, exist_ok=True)
    rel = Path(os.path.relpath(figdir, out.parent)).as_posix()
    held = load_heldout(args, est)
    cross = (cross_fitted_estimators(est)
             if md.posterior_calibration is not None and not args.training_set
             and args.held_out == "holdout" else None)
    page = Page(args, est, held, sorted(float(s) for s in args.snr), cross, t_start)
    print(f"{md.full_name}: {page.n_spec} held-out spectra of {page.n_star} stars; "
          f"S/N {page.snrs}")

    run_snrs(page)
    fig_snrs = pick_snr(page.snrs, [50.0, 250.0])
    edges = edges_section(page)
    resolution = resolution_section(page)
    noise = noise_section(page)
    sun = sun_section(page)
    print(f"  OOD and Sun done ({page.elapsed()})")
    figs = make_figures(page, figdir, fig_snrs)
    runtime = time.perf_counter() - t_start

    text = "".join([
        header_section(page, runtime),
        accuracy_section(page, rel, figs, fig_snrs),
        targets_section(page),
        goals_section(page, args.goals) if args.goals else "",
        populations_section(page),
        calibration_section(page, rel, figs),
        ood_section(page, edges, resolution, noise),
        sun,
        heading("Posterior of one held-out star", "="),
        figure(f"{rel}/{figs['corner']}", "Corner plot of the posterior draws of one "
               "held-out star (red: true labels)."),
    ])
    out.write_text(text)
    print(f"wrote {out} and {len(figs)} figures in {figdir} ({runtime:.0f} s)")


def calibration_note(cal: PosteriorCalibration | None, cross: Any) -> str:
    if cal is None:
        return "none (the network's own draws)"
    how = str(cal.info.get("data", "")).rstrip(".")
    return (f"fitted by ``{cal.info.get('script', '?')}``"
            + (f" on {how}" if how else "")
            + ("; coverage on this page is 2-fold cross-fitted by star" if cross is not None
               else "; coverage on this page uses it as shipped")
            + "; it does not change medians, so bias and scatter do not depend on it")


def cov_fmt(v: float) -> str:
    return f"{v:.2f}" if np.isfinite(v) else "--"


def setup_r(est: CINNParameterEstimator, seg: GridSegment) -> np.ndarray:
    """The model's resolving power at the pixels of a segment."""
    r = model_setup(est).resolving_power[seg.name]
    return np.asarray(r(seg.centers) if callable(r) else np.full(seg.npix, r), dtype=float)


def describe_r(est: CINNParameterEstimator) -> str:
    parts = []
    for seg in est.model.metadata.grid.segments:
        r = setup_r(est, seg)
        parts.append(f"{seg.name} R = {r.min():.0f}" if np.ptp(r) < 1 else
                     f"{seg.name} R = {r.min():.0f}-{r.max():.0f}")
    return ", ".join(parts)


def figure(path: str, caption: str) -> str:
    return f".. figure:: {path}\n   :width: 100%\n\n   {caption}\n\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model name, alias or directory")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--training-set", help="already-degraded training set (.npz)")
    src.add_argument("--grid", help="synthesis grid (.h5, or the seed grid .npz), or a folder "
                     "of v2 grid shards")
    ap.add_argument("--held-out", choices=["holdout", "validation-groups"], default="holdout",
                    help="--grid mode: which stars are held out")
    ap.add_argument("--vsini-per-star", type=int, default=1, help="--grid mode")
    ap.add_argument("--snr", type=float, nargs="+", default=[10, 25, 50, 100, 250],
                    help="S/N per Angstrom")
    ap.add_argument("--output", required=True, help="RST file to write")
    ap.add_argument("--figures", required=True, help="directory for the PNG figures")
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dpi", type=int, default=72)
    ap.add_argument("--ood-low-r", type=float, default=None,
                    help="lower resolving power for the resolution test (default 7000 for "
                         "R > 10000 models, else half the model's lowest R)")
    ap.add_argument("--ood-high-r", type=float, default=None,
                    help="higher resolving power (--grid mode with a grid file; default "
                         "40000, or 20000)")
    ap.add_argument("--goals", choices=sorted(V2_GOALS), default=None,
                    help="add the v2 goals of GitHub issue 12 for this 4MOST setup")
    ap.add_argument("--sun-harps", default="../shared/data/sun/Sun_HARPS.fits")
    ap.add_argument("--sun-uves", default="../shared/data/sun/UVES_Sun-1_cleaned_norm.txt.gz")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 12 spectra, one S/N, 200 draws")
    args = ap.parse_args(argv)
    if args.quick:
        args.snr = [max(args.snr)]
        args.n_samples = min(args.n_samples, 200)
    return args


def main() -> None:
    build_report(parse_args())


if __name__ == "__main__":
    main()
