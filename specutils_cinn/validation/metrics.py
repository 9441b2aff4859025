r"""Accuracy and calibration metrics for posterior estimates against known true labels.

These functions compare what `~specutils_cinn.CINNParameterEstimator` returns for spectra of
known stars (e.g. held-out synthetic spectra) with the true labels:

- `summary_statistics`: bias, scatter and robust scatter of the posterior medians;
- `interval_coverage`: how often the truth lies inside the central posterior intervals;
- `coverage_curve`: the same over many credibility levels (empirical vs nominal coverage);
- `rank_statistics`: simulation-based calibration ranks (Talts et al. 2018,
  `arXiv:1804.06788 <https://arxiv.org/abs/1804.06788>`_) with a chi-square test of their
  uniformity.

Inputs are plain arrays or the tables of `~specutils_cinn.CINNParameterEstimator.predict` and
`~specutils_cinn.CINNParameterEstimator.sample_posterior`. Logarithmic units such as
``dex(cm / s2)`` are handled as their dex values. Rows whose truth or estimate is not finite
(e.g. spectra flagged ``NO_VALID_DATA``) are left out, and the number of rows used is reported.

A posterior is *calibrated* when its central :math:`p` intervals contain the truth a fraction
:math:`p` of the time for every :math:`p`; equivalently, when the rank of the true value among
the posterior draws is uniformly distributed. Over-confident posteriors (too narrow) give
coverage below nominal and U-shaped rank histograms; under-confident ones (too wide) give
coverage above nominal and hump-shaped histograms; biased ones give skewed histograms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table
from scipy import stats

from ..results import quantile_column_name, std_unit

__all__ = [
    "RankStatistics",
    "coverage_curve",
    "interval_coverage",
    "level_name",
    "posterior_rank_fraction",
    "rank_statistics",
    "summary_statistics",
]

#: Scale factor turning the median absolute deviation into a Gaussian standard deviation.
MAD_TO_SIGMA = 1.482602218505602


# ----------------------------------------------------------------------------- helpers
def _plain(values: Any) -> np.ndarray:
    """Float64 values of an array, Quantity or column (dex values for logarithmic units)."""
    if isinstance(values, u.Quantity):
        values = values.value
    return np.asarray(values, dtype=np.float64)


def _has(source: Any, name: str) -> bool:
    """Whether a table or mapping has a column ``name`` (``in`` on a Table iterates rows)."""
    if isinstance(source, Table):
        return name in source.colnames
    return isinstance(source, Mapping) and name in source


def _names(parameters: Sequence[str] | None, source: Any, what: str) -> list[str]:
    if parameters is not None:
        names = [str(p) for p in parameters]
    elif isinstance(source, (Table, Mapping)):
        keys = source.colnames if isinstance(source, Table) else list(source)
        names = [k for k in keys if k not in ("snr", "coverage", "flags")]
    else:
        raise ValueError(f"parameters must be given when {what} is an array")
    if not names:
        raise ValueError("no parameters to evaluate")
    return names


def _truth_array(truth: Any, names: list[str]) -> np.ndarray:
    """``[N, D]`` true values from an array or a table/mapping with one column per name."""
    if isinstance(truth, (Table, Mapping)):
        missing = [p for p in names if not _has(truth, p)]
        if missing:
            raise ValueError(f"truth has no column(s) {missing}")
        arr = np.stack([_plain(truth[p]) for p in names], axis=1)
    else:
        arr = _plain(truth)
        if arr.ndim == 1 and len(names) == 1:
            arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(f"truth must have shape (N, {len(names)}), got {arr.shape}")
    return arr


def _estimate_array(table: Any, names: list[str], n: int) -> np.ndarray:
    """``[N, D]`` point estimates: the ``<p>`` columns of a table, or an array."""
    if isinstance(table, (Table, Mapping)):
        missing = [p for p in names if not _has(table, p)]
        if missing:
            raise ValueError(f"table has no column(s) {missing}")
        cols = [_plain(table[p]) for p in names]
        if any(c.ndim != 1 for c in cols):
            raise ValueError(
                "table columns must hold one value per row (use the output of predict, "
                "not of sample_posterior)"
            )
        arr = np.stack(cols, axis=1)
    else:
        arr = _plain(table)
        if arr.ndim == 1 and len(names) == 1:
            arr = arr[:, None]
    if arr.shape != (n, len(names)):
        raise ValueError(f"estimates must have shape ({n}, {len(names)}), got {arr.shape}")
    return arr


def _samples_array(samples: Any, names: list[str], n: int) -> np.ndarray:
    """``[N, S, D]`` posterior draws from an array or a `sample_posterior` table."""
    if isinstance(samples, (Table, Mapping)):
        missing = [p for p in names if not _has(samples, p)]
        if missing:
            raise ValueError(f"samples table has no column(s) {missing}")
        cols = [_plain(samples[p]) for p in names]
        if any(c.ndim != 2 for c in cols):
            raise ValueError("sample columns must have shape (N, n_samples)")
        arr = np.stack(cols, axis=2)
    else:
        arr = _plain(samples)
        if arr.ndim == 2 and len(names) == 1:
            arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] != n or arr.shape[2] != len(names) or arr.shape[1] < 1:
        raise ValueError(
            f"samples must have shape ({n}, n_samples, {len(names)}), got {arr.shape}"
        )
    return arr


def _units(source: Any, names: list[str]) -> list[u.UnitBase | None]:
    out: list[u.UnitBase | None] = []
    for p in names:
        col = source[p] if _has(source, p) else None
        unit = getattr(col, "unit", None)
        out.append(std_unit(unit) if unit is not None else None)
    return out


def _check_levels(levels: Any) -> np.ndarray:
    lv = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if lv.ndim != 1 or lv.size == 0 or not np.all((lv > 0) & (lv < 1)):
        raise ValueError(f"levels must be numbers in (0, 1), got {levels!r}")
    return lv


def level_name(level: float) -> str:
    """Column name for a credibility level: 0.68 -> ``coverage_68``, 0.955 -> ``coverage_95_5``.

    Parameters
    ----------
    level : float
        Level in (0, 1).

    Returns
    -------
    str
    """
    return f"coverage_{100 * level:g}".replace(".", "_")


def posterior_rank_fraction(truth: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Fraction of posterior draws below the truth (ties count half), shape ``[N, D]``.

    Parameters
    ----------
    truth : `numpy.ndarray`, shape ``[N, D]``
        True values.
    samples : `numpy.ndarray`, shape ``[N, S, D]``
        Posterior draws.

    Returns
    -------
    `numpy.ndarray`
        Values in [0, 1]; NaN where the truth or any draw is not finite.
    """
    t = truth[:, None, :]
    below = (samples < t).sum(axis=1)
    equal = (samples == t).sum(axis=1)
    frac = (below + 0.5 * equal) / samples.shape[1]
    bad = ~np.isfinite(truth) | ~np.isfinite(samples).all(axis=1)
    return np.where(bad, np.nan, frac)


# ----------------------------------------------------------------------------- public API
def summary_statistics(
    truth: Any,
    table: Any,
    parameters: Sequence[str] | None = None,
) -> QTable:
    r"""Bias, scatter and robust scatter of point estimates against true values.

    Parameters
    ----------
    truth : array-like of shape ``[N, D]``, or table/mapping with one column per parameter
        True values (dex values for ``logg``), rows in the order of ``table``.
    table : `~astropy.table.QTable` or array-like of shape ``[N, D]``
        Output of `~specutils_cinn.CINNParameterEstimator.predict` (its ``<p>`` columns, the
        posterior medians, are used), or point estimates. When it has ``<p>_std`` columns their
        median is reported too.
    parameters : sequence of str, optional
        Parameters to evaluate, in order. Default: every column of ``truth`` when it is a
        table (required when both inputs are arrays).

    Returns
    -------
    `~astropy.table.QTable`
        One row per parameter with columns ``parameter``, ``n`` (rows with finite truth and
        estimate), ``bias`` (median of estimate - truth), ``scatter`` (standard deviation of
        estimate - truth), ``robust_scatter`` (1.4826 times the median absolute deviation of
        the residuals from their median), ``rms`` (root mean square residual),
        ``median_std`` (median posterior standard deviation; NaN when not available) and
        ``unit`` (the unit of the spread, e.g. ``K`` or ``dex``; empty when unknown).
        Values are plain floats in that unit because the parameters have different units.

    Examples
    --------
    >>> import numpy as np
    >>> from specutils_cinn.validation import summary_statistics
    >>> truth = np.array([[5000.0], [5500.0], [6000.0]])
    >>> s = summary_statistics(truth, truth + 10.0, ["teff"])
    >>> float(s["bias"][0]), float(s["scatter"][0])
    (10.0, 0.0)
    """
    names = _names(parameters, truth, "truth")
    t = _truth_array(truth, names)
    est = _estimate_array(table, names, t.shape[0])
    units = _units(table, names)
    out = QTable()
    out["parameter"] = names
    n_used, bias, scat, rob, rms, med_std = [], [], [], [], [], []
    for j, p in enumerate(names):
        d = est[:, j] - t[:, j]
        d = d[np.isfinite(d)]
        n_used.append(d.size)
        if d.size == 0:
            d = np.array([np.nan])
        med = np.median(d)
        bias.append(med)
        scat.append(np.std(d))
        rob.append(MAD_TO_SIGMA * np.median(np.abs(d - med)))
        rms.append(np.sqrt(np.mean(d**2)))
        std_col = f"{p}_std"
        if _has(table, std_col):
            s = _plain(table[std_col])
            s = s[np.isfinite(s)]
            med_std.append(np.median(s) if s.size else np.nan)
        else:
            med_std.append(np.nan)
    out["n"] = np.asarray(n_used, dtype=int)
    out["bias"] = np.asarray(bias, dtype=float)
    out["scatter"] = np.asarray(scat, dtype=float)
    out["robust_scatter"] = np.asarray(rob, dtype=float)
    out["rms"] = np.asarray(rms, dtype=float)
    out["median_std"] = np.asarray(med_std, dtype=float)
    out["unit"] = [str(un) if un is not None else "" for un in units]
    return out


def interval_coverage(
    truth: Any,
    posterior: Any,
    levels: Sequence[float] = (0.68, 0.95),
    parameters: Sequence[str] | None = None,
) -> QTable:
    r"""Fraction of true values inside the central posterior intervals.

    Parameters
    ----------
    truth : array-like of shape ``[N, D]``, or table/mapping with one column per parameter
        True values.
    posterior : array of shape ``[N, S, D]``, or `~astropy.table.QTable`
        Posterior draws (an array, or the table of
        `~specutils_cinn.CINNParameterEstimator.sample_posterior`), or the table of
        `~specutils_cinn.CINNParameterEstimator.predict` holding the quantile columns
        ``<p>_p<100 (1 - level) / 2>`` and ``<p>_p<100 (1 + level) / 2>`` of every level (for
        0.68: ``teff_p16`` and ``teff_p84``; for 0.95: ``teff_p2_5`` and ``teff_p97_5``).
    levels : sequence of float, optional
        Credibility levels of the central intervals, in (0, 1).
    parameters : sequence of str, optional
        Parameters to evaluate; default every column of ``truth`` when it is a table.

    Returns
    -------
    `~astropy.table.QTable`
        One row per parameter: ``parameter``, ``n`` (rows used) and one column per level named
        by `level_name` (``coverage_68``, ``coverage_95``): the fraction of rows whose true
        value lies inside the interval. A calibrated posterior gives about the level itself.

    Raises
    ------
    ValueError
        If a needed quantile column is missing or shapes do not match.
    """
    names = _names(parameters, truth, "truth")
    t = _truth_array(truth, names)
    lv = _check_levels(levels)
    inside = np.empty((lv.size,) + t.shape)
    ok = np.ones(t.shape, dtype=bool) & np.isfinite(t)
    is_summary = isinstance(posterior, (Table, Mapping)) and all(
        np.ndim(_plain(posterior[p])) == 1 for p in names if _has(posterior, p)
    )
    if is_summary:
        for k, level in enumerate(lv):
            lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
            lo = np.empty_like(t)
            hi = np.empty_like(t)
            for j, p in enumerate(names):
                cols = quantile_column_name(p, round(lo_q, 6)), quantile_column_name(
                    p, round(hi_q, 6)
                )
                missing = [c for c in cols if not _has(posterior, c)]
                if missing:
                    raise ValueError(
                        f"posterior table has no quantile column(s) {missing} for level {level}"
                    )
                lo[:, j], hi[:, j] = _plain(posterior[cols[0]]), _plain(posterior[cols[1]])
            ok &= np.isfinite(lo) & np.isfinite(hi)
            inside[k] = (t >= lo) & (t <= hi)
    else:
        s = _samples_array(posterior, names, t.shape[0])
        frac = posterior_rank_fraction(t, s)
        ok &= np.isfinite(frac)
        for k, level in enumerate(lv):
            inside[k] = np.abs(frac - 0.5) <= level / 2
    out = QTable()
    out["parameter"] = names
    out["n"] = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, level in enumerate(lv):
            out[level_name(level)] = np.where(ok, inside[k], 0).sum(axis=0) / ok.sum(axis=0)
    return out


def coverage_curve(
    truth: Any,
    samples: Any,
    levels: Sequence[float] | None = None,
    parameters: Sequence[str] | None = None,
) -> QTable:
    r"""Empirical against nominal coverage of central posterior intervals over many levels.

    Parameters
    ----------
    truth : array-like of shape ``[N, D]``, or table/mapping with one column per parameter
        True values.
    samples : array of shape ``[N, S, D]`` or `~astropy.table.QTable`
        Posterior draws (the table of `~specutils_cinn.CINNParameterEstimator.sample_posterior`).
    levels : sequence of float, optional
        Nominal levels in (0, 1); default 0.02, 0.04, ..., 0.98.
    parameters : sequence of str, optional
        Parameters to evaluate; default every column of ``truth`` when it is a table.

    Returns
    -------
    `~astropy.table.QTable`
        Column ``nominal`` (the levels) and one column per parameter with the fraction of rows
        whose truth lies inside the central interval of that level. A calibrated posterior
        follows the diagonal; an over-confident one lies below it. ``meta["n"]`` holds the
        number of rows used per parameter.
    """
    names = _names(parameters, truth, "truth")
    t = _truth_array(truth, names)
    lv = _check_levels(np.arange(1, 50) / 50 if levels is None else levels)
    s = _samples_array(samples, names, t.shape[0])
    frac = posterior_rank_fraction(t, s)
    out = QTable()
    out["nominal"] = lv
    n = np.isfinite(frac).sum(axis=0)
    dist = np.abs(frac - 0.5)
    for j, p in enumerate(names):
        d = dist[:, j][np.isfinite(dist[:, j])]
        if d.size:
            out[p] = (d[None, :] <= lv[:, None] / 2).mean(axis=1)
        else:
            out[p] = np.full(lv.size, np.nan)
    out.meta["n"] = {p: int(k) for p, k in zip(names, n, strict=True)}
    return out


@dataclass(frozen=True)
class RankStatistics:
    """Simulation-based calibration ranks and their uniformity summary.

    Attributes
    ----------
    parameters : list of str
        Parameter names, in column order.
    ranks : `numpy.ndarray` of int, shape ``[N, D]``
        Number of posterior draws below the true value, in ``0..n_samples``; -1 where the truth
        or a draw is not finite.
    n_samples : int
        Draws per posterior (ranks take ``n_samples + 1`` values).
    bin_edges : `numpy.ndarray`, shape ``[n_bins + 1]``
        Edges of the histogram bins in rank units.
    histogram : `numpy.ndarray` of int, shape ``[n_bins, D]``
        Counts of finite ranks per bin.
    expected : `numpy.ndarray`, shape ``[n_bins, D]``
        Expected counts per bin under uniform ranks.
    chi2 : `numpy.ndarray`, shape ``[D]``
        Pearson chi-square of the histogram against ``expected``.
    p_value : `numpy.ndarray`, shape ``[D]``
        Probability of a chi-square at least this large for uniform ranks (``n_bins - 1``
        degrees of freedom); small values mean the posterior is miscalibrated.
    mean_fraction, std_fraction : `numpy.ndarray`, shape ``[D]``
        Mean and standard deviation of ``rank / n_samples``: 0.5 and
        :math:`1/\\sqrt{12} \\approx 0.289` when calibrated. A mean off 0.5 shows a bias (above
        0.5: the posterior lies below the truth); a larger spread shows over-confidence, a
        smaller one under-confidence.
    """

    parameters: list[str]
    ranks: np.ndarray
    n_samples: int
    bin_edges: np.ndarray
    histogram: np.ndarray
    expected: np.ndarray
    chi2: np.ndarray
    p_value: np.ndarray
    mean_fraction: np.ndarray
    std_fraction: np.ndarray

    def summary(self) -> QTable:
        """One row per parameter: ``parameter``, ``n``, ``chi2``, ``dof``, ``p_value``,
        ``mean_fraction``, ``std_fraction``.

        Returns
        -------
        `~astropy.table.QTable`
        """
        out = QTable()
        out["parameter"] = list(self.parameters)
        out["n"] = (self.ranks >= 0).sum(axis=0)
        out["chi2"] = self.chi2
        out["dof"] = np.full(len(self.parameters), self.histogram.shape[0] - 1)
        out["p_value"] = self.p_value
        out["mean_fraction"] = self.mean_fraction
        out["std_fraction"] = self.std_fraction
        return out


def rank_statistics(
    truth: Any,
    samples: Any,
    n_bins: int | None = None,
    parameters: Sequence[str] | None = None,
) -> RankStatistics:
    r"""Simulation-based calibration: ranks of the true values among the posterior draws.

    For each row and parameter the rank is the number of posterior draws below the true value
    (Talts et al. 2018). When the true labels are drawn from the training prior and the
    posterior is exact, ranks are uniform on ``0..n_samples``; their histogram is tested
    against a flat one with Pearson's chi-square.

    Parameters
    ----------
    truth : array-like of shape ``[N, D]``, or table/mapping with one column per parameter
        True values.
    samples : array of shape ``[N, S, D]`` or `~astropy.table.QTable`
        Posterior draws (the table of `~specutils_cinn.CINNParameterEstimator.sample_posterior`).
    n_bins : int, optional
        Histogram bins; default about 20 expected counts per bin, between 2 and 20. Each bin
        collects whole ranks, and the expected counts account for unequal bins.
    parameters : sequence of str, optional
        Parameters to evaluate; default every column of ``truth`` when it is a table.

    Returns
    -------
    `RankStatistics`
    """
    names = _names(parameters, truth, "truth")
    t = _truth_array(truth, names)
    s = _samples_array(samples, names, t.shape[0])
    n_s = s.shape[1]
    finite = np.isfinite(t) & np.isfinite(s).all(axis=1)
    ranks = np.where(finite, (s < t[:, None, :]).sum(axis=1), -1).astype(np.int64)
    n_rows = finite.sum(axis=0)
    if n_bins is None:
        n_bins = int(np.clip(int(n_rows.max(initial=0)) // 20, 2, 20))
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    n_bins = min(int(n_bins), n_s + 1)
    # Bin k collects ranks r with floor(r * n_bins / (n_s + 1)) == k.
    which = np.floor(np.arange(n_s + 1) * n_bins / (n_s + 1)).astype(int)
    width = np.bincount(which, minlength=n_bins)
    edges = np.concatenate([[0], np.cumsum(width)]).astype(float) - 0.5
    hist = np.zeros((n_bins, len(names)), dtype=np.int64)
    expected = np.zeros((n_bins, len(names)))
    chi2 = np.full(len(names), np.nan)
    p_value = np.full(len(names), np.nan)
    mean_f = np.full(len(names), np.nan)
    std_f = np.full(len(names), np.nan)
    for j in range(len(names)):
        r = ranks[finite[:, j], j]
        if r.size == 0:
            continue
        hist[:, j] = np.bincount(which[r], minlength=n_bins)
        expected[:, j] = r.size * width / (n_s + 1)
        chi2[j] = float(np.sum((hist[:, j] - expected[:, j]) ** 2 / expected[:, j]))
        p_value[j] = float(stats.chi2.sf(chi2[j], n_bins - 1))
        mean_f[j] = float(np.mean(r / n_s))
        std_f[j] = float(np.std(r / n_s))
    return RankStatistics(
        parameters=names,
        ranks=ranks,
        n_samples=n_s,
        bin_edges=edges,
        histogram=hist,
        expected=expected,
        chi2=chi2,
        p_value=p_value,
        mean_fraction=mean_f,
        std_fraction=std_f,
    )
