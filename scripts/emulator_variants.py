"""Where the Gaussian-process emulator's 99th percentile comes from, and what does not lower it.

The v2 emulators (``kind = "gp"``, docs/emulator.rst) miss the issue's 99th-percentile target
of 0.01. This script refits the same principal components and Gaussian processes
(`specutils_cinn.emulator.gp`) on one fixed set of training stars with one change at a time,
and measures each variant on the same held-out Turbospectrum stars:

``base``
    As the configuration: flux components, labels scaled linearly to their training ranges.
``theta``
    Teff enters as :math:`\\theta = 5040/T_\\mathrm{eff}`, which stretches the cool end.
``poly``
    A quadratic polynomial of the labels (ridge least squares) as the mean of every
    coefficient; the processes model what it leaves.
``log``
    Components of the logarithm of the flux (lines multiply); the prediction is exponentiated.
``groups``
    Finer groups of components sharing length scales: 8, 16, 32, 64.
``c192``
    192 global components instead of the configuration's number.
``local``
    A second set of processes fitted only on the training stars below 5000 K, used below
    4600 K and blended linearly into the global one up to 4900 K.
``family``
    One set of processes per atmosphere family, each fitted only on its own training stars:
    ATLAS9 below [Fe/H] = -2.5, MARCS at and above (the same principal components). The
    spectra jump where the family changes (docs/emulator.rst, "What does not lower the 99th
    percentile"); this variant does not smooth across the jump.

The training stars are the first ``--train-stars`` stars of the design that are not held out
(by ``star_id``, a Sobol prefix); the test stars are the held-out stars (``star_id % 10 ==
9``) with ``star_id`` below ``--star-id-below``, so that the rows stay the same as the grid
grows. Residuals are |emulated - true| in units of the continuum over all pixels of the test
stars, overall, per segment, and for the test stars below and above 4500 K.

Usage::

    specutils-cinn emulator prepare --shards grid/4most-lte-v2 --setup hr -o work/emu_v2_hr.npz
    python scripts/emulator_variants.py work/emu_v2_hr.npz \\
        --config configs/emulator-4most-hr-v2.toml --train-stars 600 --star-id-below 1424 \\
        --output docs/emulator/variants_v2_hr.rst
    python scripts/emulator_variants.py work/emu_v2_hr.npz \
        --config configs/emulator-4most-hr-v2.toml --scaling 300 600 1200 --star-id-below 1424 \
        --output docs/emulator/scaling_v2_hr.rst

``--scaling`` fits the ``base`` variant on the first 300, 600, ... training stars instead, and
extrapolates, at the rate between the smallest and the largest set, how many training stars
the 99th percentile needs to reach the issue's 0.01, overall, below and above 4500 K.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from specutils_cinn.emulator.gp import fit_gaussian_process, principal_basis
from specutils_cinn.emulator.pipeline import load_training_data, read_emulator_config
from specutils_cinn.validation.rst import simple_table

VARIANTS = ("base", "theta", "poly", "log", "groups", "c192", "local", "family")
#: Teff (K) that splits the test stars into the cool and the rest.
COOL = 4500.0
#: ``local``: training stars of the cool processes, and the blend from cool to global (K).
LOCAL_TRAIN_BELOW, LOCAL_BLEND = 5000.0, (4600.0, 4900.0)


def choose_rows(star_id: np.ndarray, holdout: np.ndarray, n_train: int,
                star_id_below: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the first ``n_train`` non-held-out stars and of the held-out test stars.

    Parameters
    ----------
    star_id, holdout : numpy.ndarray
        Star number and held-out flag of each row.
    n_train : int
        Training stars (the lowest star numbers that are not held out).
    star_id_below : int or None
        Test stars are the held-out rows below this star number (all if None).

    Returns
    -------
    train, test : numpy.ndarray
        Row indices, each in ascending ``star_id``.
    """
    order = np.argsort(star_id, kind="stable")
    train = order[~holdout[order]]
    if not 2 <= n_train <= train.size:
        raise ValueError(f"--train-stars must be in 2..{train.size} (stars not held out), "
                         f"got {n_train}")
    test = order[holdout[order]]
    if star_id_below is not None:
        test = test[star_id[test] < star_id_below]
    if test.size == 0:
        raise ValueError("no held-out star is left to test on")
    return train[:n_train], test


def _quadratic(x: np.ndarray) -> np.ndarray:
    n, d = x.shape
    cross = [x[:, i] * x[:, j] for i in range(d) for j in range(i, d)]
    return np.column_stack([np.ones(n), x, *cross])


def fit_predict(data: dict, train: np.ndarray, test: np.ndarray, variant: str,
                conf: dict, steps: int | None = None) -> np.ndarray:
    """Emulated flux of the test rows from processes fitted on the training rows.

    Parameters
    ----------
    data : dict
        `~specutils_cinn.emulator.pipeline.load_training_data` output.
    train, test : numpy.ndarray
        Row indices.
    variant : str
        One of `VARIANTS`.
    conf : dict
        The ``[emulator]`` table of an emulator configuration (``n_components``,
        ``gp_groups``, ``gp_kernel``, ``gp_steps``, ``gp_learning_rate``, ``gp_fit_stars``,
        ``gp_windows``, ``gp_window_components``, ``seed``).
    steps : int, optional
        Hyperparameter steps instead of ``gp_steps``.

    Returns
    -------
    numpy.ndarray
        ``[len(test), npix]``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    names = data["label_names"]
    labels = np.asarray(data["labels"], dtype=np.float64).copy()
    it = names.index("teff")
    if variant == "theta":
        labels[:, it] = 5040.0 / labels[:, it]
    lo, hi = labels[train].min(0), labels[train].max(0)
    x = (labels - lo) / np.maximum(hi - lo, 1e-6) - 0.5
    flux = np.asarray(data["flux"], dtype=np.float32)
    if variant == "log":
        flux = np.log(np.clip(flux, 1e-3, None))
    ft = torch.from_numpy(flux[train])
    mean = ft.mean(0)
    groups = (8, 16, 32, 64) if variant == "groups" else tuple(conf.get("gp_groups", (16, 48)))
    n_comp = 192 if variant == "c192" else int(conf.get("n_components", 128))
    basis, bounds, _ = principal_basis(
        ft - mean, data["setup"].grid.wavelength.value, min(n_comp, len(train)), groups,
        conf.get("gp_windows", ()), int(conf.get("gp_window_components", 8)))
    y = ((ft - mean) @ basis.T).double().numpy()
    xtr, xte = x[train], x[test]
    y_mean_tr = y_mean_te = 0.0
    if variant == "poly":
        p = _quadratic(xtr)
        coef = np.linalg.solve(p.T @ p + 1e-6 * len(train) * np.eye(p.shape[1]), p.T @ y)
        y_mean_tr, y_mean_te = p @ coef, _quadratic(xte) @ coef
    seed = int(conf.get("seed", 0))
    kw = dict(kernel=conf.get("gp_kernel", "matern52"),
              steps=int(conf.get("gp_steps", 400) if steps is None else steps),
              learning_rate=float(conf.get("gp_learning_rate", 0.05)),
              max_fit_rows=int(conf.get("gp_fit_stars", 1500)))

    def gp_predict(rows: np.ndarray) -> np.ndarray:
        gp, _ = fit_gaussian_process(torch.from_numpy(xtr[rows]),
                                     torch.from_numpy((y - y_mean_tr)[rows]), bounds,
                                     generator=torch.Generator().manual_seed(seed), **kw)
        with torch.no_grad():
            return gp(torch.from_numpy(xte)).double().numpy()

    if variant == "family":
        from specutils_cinn.synthesis.atlas9 import MARCS_MIN_M_H

        ifeh = names.index("fe_h")
        low_tr = data["labels"][train, ifeh] < MARCS_MIN_M_H
        low_te = data["labels"][test, ifeh] < MARCS_MIN_M_H
        if min(low_tr.sum(), (~low_tr).sum()) < 2:
            raise ValueError("'family' needs training stars of both atmosphere families")
        z = np.where(low_te[:, None], gp_predict(np.flatnonzero(low_tr)),
                     gp_predict(np.flatnonzero(~low_tr)))
    else:
        z = gp_predict(np.arange(len(train)))
    z = z + y_mean_te
    if variant == "local":
        cool = data["labels"][train, it] < LOCAL_TRAIN_BELOW
        if cool.sum() < 2:
            raise ValueError(f"'local' needs training stars below {LOCAL_TRAIN_BELOW:g} K")
        w = np.clip((LOCAL_BLEND[1] - data["labels"][test, it])
                    / (LOCAL_BLEND[1] - LOCAL_BLEND[0]), 0.0, 1.0)[:, None]
        z = w * gp_predict(np.flatnonzero(cool)) + (1.0 - w) * z
    pred = mean.double().numpy() + z @ basis.double().numpy()
    return np.exp(pred) if variant == "log" else pred


def stars_for_target(sizes: Sequence[int], p99: Sequence[float], target: float = 0.01
                     ) -> tuple[float, float]:
    """Factor by which the 99th percentile falls per doubling, and the stars that reach target.

    Parameters
    ----------
    sizes : sequence of int
        Training stars, rising.
    p99 : sequence of float
        The 99th percentile at each size.
    target : float
        The 99th percentile wanted.

    Returns
    -------
    factor : float
        ``(p99[0] / p99[-1]) ** (1 / log2(sizes[-1] / sizes[0]))``.
    stars : float
        Training stars where the power law through the first and last point reaches
        ``target`` (the last size if it is reached already; infinity if it does not fall).
    """
    n0, n1, p0, p1 = float(sizes[0]), float(sizes[-1]), float(p99[0]), float(p99[-1])
    if not n1 > n0:
        raise ValueError("the sizes must rise")
    factor = (p0 / p1) ** (1.0 / np.log2(n1 / n0))
    if p1 <= target:
        return factor, n1
    if factor <= 1.0:
        return factor, float("inf")
    return factor, n1 * 2.0 ** (np.log(p1 / target) / np.log(factor))


def summary_row(variant: str, seconds: float, residual: np.ndarray, teff: np.ndarray,
                segment: np.ndarray, n_segments: int) -> list[str]:
    """One table row: median and 99th percentiles overall, per segment, cool and warm."""
    def p99(r: np.ndarray) -> str:
        return f"{np.percentile(r, 99):.2e}" if r.size else "-"
    cool = teff < COOL
    row = [variant, f"{seconds:.0f}", f"{np.median(residual):.2e}", p99(residual)]
    row += [p99(residual[:, segment == s]) for s in range(n_segments)]
    return row + [p99(residual[cool]), p99(residual[~cool])]


def main(argv: Sequence[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="emulator training data (.npz, specutils-cinn emulator prepare)")
    ap.add_argument("--config", required=True, help="emulator configuration (TOML)")
    ap.add_argument("--train-stars", type=int, default=600)
    ap.add_argument("--scaling", type=int, nargs="+", default=None, metavar="N",
                    help="fit the base variant on the first N training stars for each N")
    ap.add_argument("--star-id-below", type=int, default=None)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--steps", type=int, default=None, help="hyperparameter steps per group")
    ap.add_argument("--worst", type=int, default=0, metavar="N",
                    help="also list the N test stars with the largest 99th percentile under "
                         "the first variant (their labels)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output", help="write the table (reStructuredText) here")
    args = ap.parse_args(argv)
    if args.output and not Path(args.output).parent.is_dir():
        ap.error(f"the folder of --output does not exist: {args.output}")
    conf = read_emulator_config(args.config).get("emulator", {})
    torch.set_num_threads(args.threads)
    data = load_training_data(args.data)
    star_id, holdout = np.asarray(data["star_id"]), np.asarray(data["holdout"], bool)
    sizes = sorted(set(args.scaling)) if args.scaling else [args.train_stars]
    if args.scaling and len(sizes) < 2:
        ap.error("--scaling needs at least two sizes")
    train, test = choose_rows(star_id, holdout, sizes[-1], args.star_id_below)
    grid = data["setup"].grid
    segment, names = grid.segment_index, [s.name for s in grid.segments]
    teff = data["labels"][test, data["label_names"].index("teff")]
    cool = teff < COOL
    truth = np.asarray(data["flux"][test], dtype=np.float64)
    rows = []
    runs = ([("base", n) for n in sizes] if args.scaling
            else [(v, args.train_stars) for v in args.variants])
    star_p99 = None
    for v, n in runs:
        rows_n = choose_rows(star_id, holdout, n, args.star_id_below)[0]
        t0 = time.perf_counter()
        pred = fit_predict(data, rows_n, test, v, conf, args.steps)
        if star_p99 is None:
            star_p99 = np.percentile(np.abs(pred - truth), 99, axis=1)
        row = summary_row(v, time.perf_counter() - t0, np.abs(pred - truth), teff,
                          segment, len(names))
        rows.append([str(n), *row[1:]] if args.scaling else row)
        print("  ".join(rows[-1]), flush=True)
    first = "Training stars" if args.scaling else "Variant"
    header = [first, "Fit s", "Median abs", "p99 abs", *(f"p99 {n}" for n in names),
              f"p99 < {COOL:.0f} K", f"p99 >= {COOL:.0f} K"]
    what = ("the base variant on the first N training stars of the design" if args.scaling
            else f"{len(train)} training stars (the first of the design)")
    option = (f"--scaling {' '.join(map(str, sizes))}" if args.scaling
              else f"--train-stars {args.train_stars}")
    if not args.scaling and list(args.variants) != list(VARIANTS):
        option += " --variants " + " ".join(args.variants)
    if args.worst:
        option += f" --worst {args.worst}"
    text = (f"Gaussian-process emulator variants: {what}, {len(test)} held-out test stars "
            f"({int(cool.sum())} below {COOL:.0f} K); absolute difference between emulated and "
            f"true flux in units of the continuum, over all pixels.\n"
            f"Command: ``python scripts/emulator_variants.py {args.data} --config "
            f"{args.config} {option}"
            + (f" --star-id-below {args.star_id_below}" if args.star_id_below is not None else "")
            + "``\n\n" + simple_table(header, rows) + "\n")
    if args.scaling:
        lines = []
        for label, col in (("all test stars", 3), (f"below {COOL:.0f} K", -2),
                           (f"at or above {COOL:.0f} K", -1)):
            last = float(rows[-1][col])
            factor, need = stars_for_target(sizes, [float(r[col]) for r in rows])
            if last <= 0.01:
                end = f"it is at or below 0.01 with {sizes[-1]:,} training stars"
            elif not np.isfinite(need):
                end = "it does not fall, so more stars alone do not bring it to 0.01"
            else:
                end = f"at that rate it reaches 0.01 at about {need:,.0f} training stars"
            lines.append(f"- {label}: the 99th percentile changes by a factor "
                         f"{1 / factor:.2f} per doubling of the training stars; {end}.")
        text += "\n" + "\n".join(lines) + "\n"
    if args.worst:
        order = np.argsort(-star_p99, kind="stable")[:args.worst]
        lab, ln = data["labels"], list(data["label_names"])
        cols = [c for c in ("teff", "logg", "fe_h") if c in ln]
        fmt = {"teff": "{:.0f}", "logg": "{:.2f}", "fe_h": "{:+.2f}"}
        worst = [[str(int(star_id[test[i]])),
                  *(fmt[c].format(lab[test[i], ln.index(c)]) for c in cols),
                  f"{star_p99[i]:.2e}"] for i in order]
        text += (f"\nThe {len(order)} test stars with the largest 99th percentile of their own "
                 f"pixels ({runs[0][0]} variant):\n\n"
                 + simple_table(["Star", *cols, "p99 abs"], worst) + "\n")
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
