"""Check the ATLAS9 interpolation used for [Fe/H] < -2.5 against the grid's own nodes.

Prints RST tables (stdout, and ``--output``):

1. **Nodes.** At every [alpha/M] = +0.4 node with [M/H] = -4.0 or -2.5 and Teff 3500-8000 K,
   :func:`~specutils_cinn.synthesis.atlas9.atlas9_atmosphere` must write the node's own numbers
   (max |difference| over all columns and layers, and ``interpolated`` False).
2. **Structure, leave one out.** A node is predicted from its neighbors on one axis with the
   production kernel (:func:`~specutils_cinn.synthesis.atlas9.combine_models`: fixed log tauRoss,
   T linear, P and Ne in log) and compared with the node at the same log tauRoss: max |dT|/T,
   |d log P| and |d log Ne| over the nodes inside the training Kiel region
   (:class:`~specutils_cinn.synthesis.design.KielRegion`, Teff 4000-7000 K), per depth band. The
   grid allows these across [M/H]: -2.5 from -4.0 and -2.0 (2.0 dex wide, the only test that
   uses the -4.0 models, so the closest to the real -4.0..-2.5 gap), -2.0 and -1.5 from -2.5 and
   -1.0 (1.5 dex, the gap's width), and -2.0 from -2.5 and -1.5 (1.0 dex). In Teff and log g,
   a node from its neighbors at +-250 K and +-0.5 dex, at [M/H] -4.0 and -2.5. Leave-one-out
   doubles the node spacing in Teff and log g, so it overstates the real interpolation errors
   there (about 4x for a smooth curvature); across [M/H] the real gap is 1.5 dex. The row "by
   RHOX" repeats the first test interpolating at fixed column mass instead, to show why tauRoss
   is the depth variable.
3. **Spectra, leave one out.** Turbospectrum (5160-5300 A at 0.03 A, Gaia-ESO list + H lines,
   the same abundances for both models) with the interpolated and with the true node model, for
   a giant (4750/1.5, vmic 2.0) and a dwarf (6250/4.0, vmic 1.5), [Mg, Ca, Ti/Fe] = +0.4;
   max |dF| after a Gaussian LSF at R = 20000 (and unbroadened).
4. **The step at [Fe/H] = -2.5.** The same labels with the MARCS x3 model ([alpha/M] = 0,
   ``ALPHA/Fe`` 0; spherical for the giant) and with the ATLAS9 [alpha/M] = +0.4 node
   (``ALPHA/Fe`` 0.4), i.e. what a grid does on either side of -2.5; split into the change of
   model family (MARCS -> ATLAS9 [alpha/M] = 0, ``ALPHA/Fe`` 0), of the model's alpha content
   (ATLAS9 0 -> 0.4, ``ALPHA/Fe`` 0.4 for both) and of the background abundances (``ALPHA/Fe``
   0 -> 0.4 with the +0.4 model: O, Ne, Si, S, Ar; Mg, Ca and Ti are set by the labels).
5. **Gap models in Turbospectrum.** Two metal-poor stars inside the gap (4700/1.5/-3.2 and
   6300/4.2/-3.5, 5160-5200 A): run time, finite flux, Mg b depths, and how far
   Turbospectrum's own gas pressure (from the deck's T and Ne) is from the deck's P.

Usage::

    python scripts/atlas9_interpolation_check.py [--processes 2] [--no-spectra]
        [--output work/atlas9_check.rst]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from specutils_cinn.synthesis.atlas9 import (
    Atlas9Grid,
    Atlas9Model,
    atlas9_atmosphere,
    combine_models,
)
from specutils_cinn.synthesis.atmospheres import Atmosphere, MarcsGrid, atmosphere_for
from specutils_cinn.synthesis.design import KielRegion
from specutils_cinn.synthesis.install import find_synthesis
from specutils_cinn.validation.rst import simple_table

WINDOW = (5160.0, 5300.0, 0.03)
RESOLVING_POWER = 20000.0
STARS = {"giant": (4750.0, 1.5, 2.0), "dwarf": (6250.0, 4.0, 1.5)}
ALPHA_LABELS = {"mg_fe": 0.4, "ca_fe": 0.4, "ti_fe": 0.4}
DEPTH_BANDS = ((-6.9, -4.0), (-4.0, -2.0), (-2.0, 0.0), (0.0, 1.0), (1.0, 2.1))
AXES = ("teff", "logg", "m_h")


def _table(rows: list[list[str]]) -> str:
    """The first row as the header of a simple table of the others."""
    return simple_table(rows[0], rows[1:])


def _interp_x(x, xp, fp):
    return np.interp(x, xp, fp)


# -- 1. nodes --
def check_nodes(grid: Atlas9Grid, work: Path) -> str:
    n, worst, flagged = 0, 0.0, 0
    for node in grid.nodes.values():
        if node.alpha_m != 0.4 or node.m_h not in (-4.0, -2.5) or not 3500 <= node.teff <= 8000:
            continue
        if not grid.usable(node):
            continue
        atm = atlas9_atmosphere(node.teff, node.logg, node.m_h, grid=grid, workdir=work,
                                name="node.mod")
        got, ref = Atlas9Model.read(atm.path).data, grid.read(node).data
        worst = max(worst, float(np.max(np.abs(got - ref) / np.abs(ref).clip(1e-30))))
        flagged += atm.interpolated or atm.nodes != (node.name,)
        n += 1
    rows = [["nodes ([alpha/M] +0.4, [M/H] -4.0 and -2.5, 3500-8000 K)", "max relative |diff|",
             "flagged interpolated"], [str(n), f"{worst:.1e}", str(flagged)]]
    return _table(rows)


# -- 2. structure leave-one-out --
def _loo_pair(grid, at, axis, lo, hi, alpha=0.4):
    i = AXES.index(axis)
    a, b = list(at), list(at)
    a[i], b[i] = lo, hi
    nodes = [grid.node(*a, alpha), grid.node(*b, alpha), grid.node(*at, alpha)]
    if not all(grid.usable(x) for x in nodes):
        return None
    f = (at[i] - lo) / (hi - lo)
    return [grid.read(x) for x in nodes], (1 - f, f)


def _by_rhox(models, weights) -> tuple[np.ndarray, np.ndarray]:
    """Combine at fixed log RHOX (the rejected alternative); returns data and log tauRoss."""
    lr = [np.log10(m.column("RHOX")) for m in models]
    target = sum(w * x for w, x in zip(weights, lr, strict=True))
    out = np.zeros_like(models[0].data)
    lt = np.zeros(target.size)
    for w, m, x in zip(weights, models, lr, strict=True):
        d = m.data.copy()
        d[:, [0, 2, 3, 4]] = np.log10(d[:, [0, 2, 3, 4]])
        out += w * np.column_stack([np.interp(target, x, d[:, j]) for j in range(d.shape[1])])
        lt += w * np.interp(target, x, m.log_tau_ross())
    out[:, [0, 2, 3, 4]] = 10 ** out[:, [0, 2, 3, 4]]
    return out, lt


def _errors(data, lt, true: Atlas9Model) -> np.ndarray:
    """Per layer of the true model: |dT|/T, |dlogP|, |dlogNe| at the same log tauRoss."""
    tl = true.log_tau_ross()
    t = _interp_x(tl, lt, data[:, 1])
    lp = _interp_x(tl, lt, np.log10(data[:, 2]))
    ln = _interp_x(tl, lt, np.log10(data[:, 3]))
    return np.column_stack([np.abs(t / true.column("T") - 1),
                            np.abs(lp - np.log10(true.column("P"))),
                            np.abs(ln - np.log10(true.column("XNE"))), tl])


def check_structure(grid: Atlas9Grid) -> tuple[str, str, str]:
    region = KielRegion()
    teffs = np.arange(4000.0, 7001.0, 250.0)
    loggs = np.arange(0.5, 5.01, 0.5)
    cases = [
        ("[M/H] -2.5 from -4.0, -2.0", "m_h", lambda at: (-4.0, -2.0), -2.5, "tau"),
        ("same, by RHOX (rejected)", "m_h", lambda at: (-4.0, -2.0), -2.5, "rhox"),
        ("[M/H] -2.0 from -2.5, -1.0", "m_h", lambda at: (-2.5, -1.0), -2.0, "tau"),
        ("[M/H] -1.5 from -2.5, -1.0", "m_h", lambda at: (-2.5, -1.0), -1.5, "tau"),
        ("[M/H] -2.0 from -2.5, -1.5", "m_h", lambda at: (-2.5, -1.5), -2.0, "tau"),
        ("Teff +-250 K at [M/H] -4.0", "teff", lambda at: (at[0] - 250, at[0] + 250), -4.0,
         "tau"),
        ("Teff +-250 K at [M/H] -2.5", "teff", lambda at: (at[0] - 250, at[0] + 250), -2.5,
         "tau"),
        ("log g +-0.5 at [M/H] -4.0", "logg", lambda at: (at[1] - 0.5, at[1] + 0.5), -4.0,
         "tau"),
        ("log g +-0.5 at [M/H] -2.5", "logg", lambda at: (at[1] - 0.5, at[1] + 0.5), -2.5,
         "tau"),
    ]
    bands = [f"{lo:g}..{hi:g}" for lo, hi in DEPTH_BANDS]
    head = ["leave-one-out (log tauRoss bands)", "nodes", *bands, "median -4..1"]
    tables = {k: [head] for k in range(3)}
    for label, axis, pair, m_h, how in cases:
        errs = []
        for teff in teffs:
            for logg in loggs:
                if not region.contains(teff, logg):
                    continue
                lo, hi = pair((teff, logg, m_h))
                got = _loo_pair(grid, (teff, logg, m_h), axis, lo, hi)
                if got is None:
                    continue
                (ma, mb, mt), w = got
                if how == "tau":
                    data = combine_models([ma, mb], w)
                    lt = w[0] * ma.log_tau_ross() + w[1] * mb.log_tau_ross()
                else:
                    data, lt = _by_rhox([ma, mb], w)
                errs.append(_errors(data, lt, mt))
        for k, fmt in ((0, "{:.3f}"), (1, "{:.3f}"), (2, "{:.3f}")):
            cells = []
            for lo, hi in DEPTH_BANDS:
                vals = [e[(e[:, 3] >= lo) & (e[:, 3] < hi), k] for e in errs]
                vals = [v.max() for v in vals if v.size]
                cells.append(fmt.format(max(vals)) if vals else "-")
            med = np.median([e[(e[:, 3] >= -4) & (e[:, 3] < 1), k].max() for e in errs])
            tables[k].append([label, str(len(errs)), *cells, fmt.format(med)])
    return _table(tables[0]), _table(tables[1]), _table(tables[2])


# -- 3./4. spectra --
def _atm(path: Path, teff, logg, m_h, alpha, nodes=(), interpolated=False) -> Atmosphere:
    return Atmosphere(path=path, marcs_file_format=False, spherical=False, teff=teff, logg=logg,
                      m_h=m_h, interpolated=interpolated, filled=False, extrapolated=False,
                      nodes=tuple(nodes), source=f"atlas9-odfnew-a{alpha:.1f}", alpha_m=alpha)


def _synth(job):
    key, labels, atm, alpha_fe, lists = job
    from specutils_cinn.synthesis.turbospectrum import synthesize

    res = synthesize(labels, [WINDOW], line_lists=lists, atmosphere=atm, alpha_fe=alpha_fe)
    return key, res.flux[0], res.seconds


def _write_loo(grid, work: Path, name, at, axis, lo, hi) -> Atmosphere:
    (ma, mb, _), w = _loo_pair(grid, at, axis, lo, hi)
    model = Atlas9Model(header=ma.header, data=combine_models([ma, mb], w), trailer=ma.trailer)
    return _atm(model.write(work / name), *at, 0.4, interpolated=True)


def spectral_jobs(grid: Atlas9Grid, marcs: MarcsGrid, install, work: Path):
    lists = [install.ges_linelist, install.hlinedata]
    jobs = []
    for star, (teff, logg, vmic) in STARS.items():
        base = {"teff": teff, "logg": logg, "vmic": vmic, **ALPHA_LABELS}

        def node_atm(m_h, alpha, teff=teff, logg=logg):
            node = grid.node(teff, logg, m_h, alpha)
            return _atm(grid.path(node), teff, logg, m_h, alpha, (node.name,))

        for m_h in (-4.0, -2.5, -2.0):
            jobs.append(((star, "true", m_h), {**base, "fe_h": m_h}, node_atm(m_h, 0.4), 0.4))
        loo = [("[M/H] -2.5 from -4.0, -2.0", "m_h", -4.0, -2.0, -2.5),
               ("[M/H] -2.0 from -2.5, -1.0", "m_h", -2.5, -1.0, -2.0),
               ("Teff +-250 K at -4.0", "teff", teff - 250, teff + 250, -4.0),
               ("log g +-0.5 at -4.0", "logg", logg - 0.5, logg + 0.5, -4.0),
               ("Teff +-250 K at -2.5", "teff", teff - 250, teff + 250, -2.5),
               ("log g +-0.5 at -2.5", "logg", logg - 0.5, logg + 0.5, -2.5)]
        for i, (label, axis, lo, hi, m_h) in enumerate(loo):
            atm = _write_loo(grid, work, f"{star}_loo{i}.mod", (teff, logg, m_h), axis, lo, hi)
            jobs.append(((star, "loo", label, m_h), {**base, "fe_h": m_h}, atm, 0.4))
        step = {**base, "fe_h": -2.5}
        m = atmosphere_for(teff, logg, -2.5, grid=marcs, workdir=work,
                           interpolator=install.interpolator, name=f"{star}_marcs.mod")
        jobs += [((star, "step", "marcs a0"), step, m, 0.0),
                 ((star, "step", "atlas9 a0, ALPHA/Fe 0"), step, node_atm(-2.5, 0.0), 0.0),
                 ((star, "step", "atlas9 a0, ALPHA/Fe 0.4"), step, node_atm(-2.5, 0.0), 0.4),
                 ((star, "step", "atlas9 a0.4, ALPHA/Fe 0"), step, node_atm(-2.5, 0.4), 0.0)]
    return [(*j, lists) for j in jobs]


def _broaden(flux):
    from specutils_cinn.instruments.broadening import gaussian_lsf_broaden

    wave = WINDOW[0] + WINDOW[2] * np.arange(flux.size)
    return np.asarray(gaussian_lsf_broaden(wave, flux, RESOLVING_POWER))


def spectral_tables(results: dict) -> tuple[str, str]:
    def d(a, b):
        fa, fb = results[a], results[b]
        return (f"{np.max(np.abs(_broaden(fa) - _broaden(fb))):.4f}",
                f"{np.max(np.abs(fa - fb)):.4f}")

    loo_rows = [["star", "leave-one-out", "max abs dF (R=20000)", "unbroadened"]]
    for key in results:
        if key[1] == "loo":
            star, _, label, m_h = key
            loo_rows.append([star, label, *d(key, (star, "true", m_h))])
    step_rows = [["star", "change at [Fe/H] = -2.5", "max abs dF (R=20000)", "unbroadened"]]
    for star in STARS:
        true = (star, "true", -2.5)
        a0 = (star, "step", "atlas9 a0, ALPHA/Fe 0")
        a0b = (star, "step", "atlas9 a0, ALPHA/Fe 0.4")
        marcs = (star, "step", "marcs a0")
        step_rows += [
            [star, "total: MARCS a0 (ALPHA/Fe 0) -> ATLAS9 a0.4 (0.4)", *d(marcs, true)],
            [star, "family: MARCS -> ATLAS9, both a0 (ALPHA/Fe 0)", *d(marcs, a0)],
            [star, "model alpha: ATLAS9 a0 -> a0.4 (ALPHA/Fe 0.4)", *d(a0b, true)],
            [star, "background: ALPHA/Fe 0 -> 0.4 (ATLAS9 a0.4)",
             *d((star, "step", "atlas9 a0.4, ALPHA/Fe 0"), true)],
        ]
    return _table(loo_rows), _table(step_rows)


# -- 5. gap models in Turbospectrum --
def gap_runs(install, grid: Atlas9Grid, work: Path) -> str:
    from specutils_cinn.synthesis.turbospectrum import synthesize

    lists = [install.ges_linelist, install.hlinedata]
    rows = [["star", "model nodes", "seconds", "finite", "min F", "F(Mg b2 5167.3)",
             "F(Mg b1 5172.7)", "dlogPg TS-deck (-5..1)"]]
    for teff, logg, fe_h, vmic in ((4700, 1.5, -3.2, 2.0), (6300, 4.2, -3.5, 1.5)):
        wd = work / f"gap_{teff}"
        res = synthesize({"teff": teff, "logg": logg, "fe_h": fe_h, "vmic": vmic},
                         [(5160.0, 5200.0, 0.02)], install=install, line_lists=lists,
                         workdir=wd, atlas9=grid)
        w, f = res.wavelength[0], res.flux[0]
        log = (wd / "babsma.log").read_text().splitlines()
        i = next(k for k, ln in enumerate(log) if "KURUCZ model converted" in ln)
        model = Atlas9Model.read(wd / "model.mod")
        n = model.data.shape[0]
        ts = np.array([[float(v) for v in ln.split()] for ln in log[i + 2:i + 2 + n]])
        lt = model.log_tau_ross()
        sel = (lt > -5) & (lt < 1)
        dp = ts[:, 3] - np.log10(model.column("P"))
        rows.append([f"{teff}/{logg}/{fe_h}", str(len(res.atmosphere.nodes)),
                     f"{res.seconds:.1f}", str(bool(np.all(np.isfinite(f)))), f"{f.min():.3f}",
                     f"{np.interp(5167.32, w, f):.3f}", f"{np.interp(5172.68, w, f):.3f}",
                     f"{dp[sel].min():+.3f}..{dp[sel].max():+.3f}"])
    return _table(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--no-spectra", action="store_true", help="structure checks only")
    ap.add_argument("--output", type=Path, help="also write the tables here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    install = find_synthesis()
    grid = Atlas9Grid(install.atmos_dir)
    out = []

    def emit(title, text):
        block = f"{title}\n{'-' * len(title)}\n\n{text}\n"
        print(block, flush=True)
        out.append(block)

    work = Path(tempfile.mkdtemp(prefix="atlas9-check-"))
    try:
        emit("1. Node reproduction", check_nodes(grid, work))
        t_tab, p_tab, n_tab = check_structure(grid)
        emit("2a. Leave-one-out structure: max abs dT/T", t_tab)
        emit("2b. Leave-one-out structure: max abs d log P (dex)", p_tab)
        emit("2c. Leave-one-out structure: max abs d log Ne (dex)", n_tab)
        if not args.no_spectra:
            jobs = spectral_jobs(grid, MarcsGrid(install.atmos_dir), install, work)
            results, secs = {}, []
            with ProcessPoolExecutor(max_workers=max(1, args.processes)) as pool:
                for key, flux, s in pool.map(_synth, jobs):
                    results[key] = flux
                    secs.append(s)
            loo, step = spectral_tables(results)
            emit("3. Leave-one-out spectra (5160-5300 A, Gaussian LSF R=20000)", loo)
            emit("4. The step at [Fe/H] = -2.5, same labels", step)
            emit("5. Gap models in Turbospectrum (5160-5200 A at 0.02 A)",
                 gap_runs(install, grid, work))
            print(f"{len(jobs)} syntheses of 5160-5300 A: {np.median(secs):.1f} s median "
                  f"({args.processes} processes)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(out))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
