"""Plots of results: a corner plot of one posterior, a spectrum against its emulated fit, and
a Kiel diagram.

Needs matplotlib, the optional extra ``[plot]``: ``pip install "specutils-cinn[plot]"``. Each
function draws on a new figure (or on ``fig``/``ax`` when given) with `matplotlib.pyplot` and
returns it; nothing is shown or saved (call ``fig.savefig(...)`` or ``plt.show()``).

Examples
--------
>>> from specutils_cinn import CINNParameterEstimator                # doctest: +SKIP
>>> from specutils_cinn import plotting                              # doctest: +SKIP
>>> est = CINNParameterEstimator.from_pretrained()                   # doctest: +SKIP
>>> draws = est.sample_posterior(spectrum, n_samples=2000)           # doctest: +SKIP
>>> plotting.plot_corner(draws, parameters=["teff", "logg", "fe_h"])  # doctest: +SKIP
>>> table = est.predict(spectrum)                                    # doctest: +SKIP
>>> plotting.plot_spectrum_fit(est.emulated_spectrum(spectrum, table[0]))  # doctest: +SKIP
>>> plotting.plot_kiel(survey_table, color="fe_h")                   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy import units as u

__all__ = ["parameter_label", "plot_corner", "plot_kiel", "plot_spectrum_fit"]

#: Axis labels of the known parameters, as astronomers write them (matplotlib mathtext).
_LABELS = {
    "teff": r"$T_\mathrm{eff}$",
    "logg": r"$\log g$",
    "fe_h": "[Fe/H]",
    "vmic": r"$v_\mathrm{mic}$",
    "vsini": r"$v \sin i$",
    "vmacro": r"$\zeta_\mathrm{RT}$",
    "a_li": "A(Li)",
}


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "specutils_cinn.plotting needs matplotlib: pip install 'specutils-cinn[plot]'"
        ) from exc
    return plt


def parameter_label(name: str, unit: u.UnitBase | None = None) -> str:
    """Axis label of a parameter or column, with its unit as astronomers write it.

    Parameters
    ----------
    name : str
        Parameter or column name, e.g. ``"teff"``, ``"mg_fe"``, ``"snr"``.
    unit : `~astropy.units.UnitBase`, optional
        The column's unit.

    Returns
    -------
    str
        E.g. ``$T_\\mathrm{eff}$ [K]``, ``$\\log g$ [cm s$^{-2}$]`` (log g in dex of cm s-2),
        ``[Mg/Fe] [dex]``, ``$v \\sin i$ [km s$^{-1}$]``; other names are used as they are.

    Examples
    --------
    >>> from astropy import units as u
    >>> from specutils_cinn.plotting import parameter_label
    >>> parameter_label("mg_fe", u.dex)
    '[Mg/Fe] [dex]'
    """
    if name in _LABELS:
        label = _LABELS[name]
    elif name.endswith("_fe") and name[:-3].isalpha():
        label = f"[{name[:-3].capitalize()}/Fe]"
    else:
        label = name
    if unit is None or unit == u.dimensionless_unscaled:
        return label
    physical = getattr(unit, "physical_unit", None)
    if unit == u.dex or (physical is not None and physical == u.dimensionless_unscaled):
        text = "dex"
    else:
        base = physical if physical is not None else unit
        text = _latex_unit(base)
    return f"{label} [{text}]"


def _latex_unit(unit: u.UnitBase) -> str:
    """``cm s$^{-2}$``-style text of a unit."""
    parts = []
    for base, power in zip(unit.bases, unit.powers, strict=True):
        name = base.to_string()
        if power == 1:
            parts.append(name)
        else:
            p = int(power) if float(power).is_integer() else power
            parts.append(f"{name}$^{{{p}}}$")
    scale = "" if unit.scale == 1 else f"{unit.scale:g} "
    return scale + " ".join(parts) if parts else unit.to_string()


def _draws_of(samples: Any, index: int, name: str) -> tuple[np.ndarray, u.UnitBase | None]:
    col = samples[name]
    row = col if np.ndim(col) == 1 else col[index]
    unit = getattr(row, "unit", None)
    values = getattr(row, "unmasked", row)
    values = np.asarray(getattr(values, "value", values), dtype=float).reshape(-1)
    return values, unit


def _sample_parameters(samples: Any) -> list[str]:
    names = []
    for name in samples.colnames:
        col = samples[name]
        if not isinstance(col, u.Quantity) or np.ndim(col) != 2:
            continue
        if np.any(getattr(col, "mask", False)):  # unconstrained by the model: not shown
            continue
        names.append(name)
    return names


def plot_corner(
    samples: Any,
    index: int = 0,
    parameters: Sequence[str] | None = None,
    *,
    truths: Mapping[str, float] | None = None,
    quantiles: Sequence[float] = (0.16, 0.5, 0.84),
    bins: int = 30,
    fig: Any = None,
) -> Any:
    """Corner plot of one spectrum's posterior draws.

    The diagonal shows the histogram of each parameter's draws with its quantiles as dashed
    lines, the panels below it the draws of each pair of parameters as points.

    Parameters
    ----------
    samples : `~astropy.table.QTable` or `~astropy.table.Row`
        The table from `~specutils_cinn.CINNParameterEstimator.sample_posterior` (one row per
        spectrum, one column of draws per parameter), or one row of it.
    index : int, optional
        Which row (spectrum) of the table; ignored for a row.
    parameters : sequence of str, optional
        Parameters to show, in this order; default all parameters of the table that the model
        constrains (masked columns are left out).
    truths : mapping of str to float, optional
        Reference values (e.g. literature values of a benchmark star) in the columns' units,
        drawn as solid lines; parameters not in the mapping get none.
    quantiles : sequence of float, optional
        Quantile levels drawn on the diagonal; an empty sequence draws none.
    bins : int, optional
        Histogram bins on the diagonal.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw on (cleared); default a new one.

    Returns
    -------
    `matplotlib.figure.Figure`
        ``fig.axes`` holds the ``n x n`` panels row by row (``n`` parameters); panels above the
        diagonal are hidden.

    Raises
    ------
    ValueError
        If a parameter is not a column of ``samples`` or the row has no finite draws (a
        spectrum that could not be used; see its flags).
    """
    plt = _pyplot()
    names = list(parameters) if parameters is not None else _sample_parameters(samples)
    if not names:
        raise ValueError("no parameter columns to plot")
    data, units = [], []
    for name in names:
        if name not in samples.colnames:
            raise ValueError(f"{name!r} is not a column of the samples table")
        values, unit = _draws_of(samples, index, name)
        if not np.any(np.isfinite(values)):
            raise ValueError(f"no finite draws of {name!r} in row {index}: see its flags")
        data.append(values)
        units.append(unit)
    n = len(names)
    if fig is None:
        fig = plt.figure(figsize=(1.9 * n + 1.0, 1.9 * n + 1.0))
    else:
        fig.clear()
    axes = fig.subplots(n, n, squeeze=False)
    truths = dict(truths or {})
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ok = np.isfinite(data[i])
                ax.hist(data[i][ok], bins=bins, histtype="step", color="k")
                for q in np.quantile(data[i][ok], list(quantiles)) if len(quantiles) else []:
                    ax.axvline(q, color="k", ls="--", lw=0.8)
                if names[i] in truths:
                    ax.axvline(truths[names[i]], color="C3", lw=1.2)
                ax.set_yticks([])
            else:
                ax.scatter(data[j], data[i], s=2, color="k", alpha=0.3, lw=0,
                           rasterized=True)
                if names[j] in truths:
                    ax.axvline(truths[names[j]], color="C3", lw=1.2)
                if names[i] in truths:
                    ax.axhline(truths[names[i]], color="C3", lw=1.2)
            if i == n - 1:
                ax.set_xlabel(parameter_label(names[j], units[j]))
            else:
                ax.tick_params(labelbottom=False)
            if j == 0 and i > 0:
                ax.set_ylabel(parameter_label(names[i], units[i]))
            elif j > 0:
                ax.tick_params(labelleft=False)
    limits = []
    for name, values in zip(names, data, strict=True):  # the draws' range, and the truth
        ref = [truths[name]] if name in truths else []
        limits.append((np.nanmin([*values, *ref]), np.nanmax([*values, *ref])))
    for j, (lo, hi) in enumerate(limits):
        if hi > lo:
            for i in range(j, n):  # shared x range along each column
                axes[i, j].set_xlim(lo, hi)
            for k in range(j):  # and y range along each row
                axes[j, k].set_ylim(lo, hi)
    fig.subplots_adjust(hspace=0.05, wspace=0.05)
    return fig


def _with_gaps(x: np.ndarray, *ys: np.ndarray) -> list[np.ndarray]:
    """Insert NaN where the wavelength jumps (between grid segments), so lines break there."""
    x = np.asarray(x, dtype=float)
    if x.size < 3:
        return [x, *ys]
    step = np.diff(x)
    gaps = np.flatnonzero(step > 3.0 * np.median(step)) + 1
    out = [np.insert(x, gaps, np.nan)]
    out += [np.insert(np.asarray(y, dtype=float), gaps, np.nan) for y in ys]
    return out


def plot_spectrum_fit(
    fit: Any,
    *,
    fig: Any = None,
    wavelength_range: Sequence[float] | None = None,
    title: str | None = None,
) -> Any:
    """The observed spectrum against the emulated spectrum, with residuals and masked pixels.

    Parameters
    ----------
    fit : `~specutils_cinn.fit_check.EmulatedSpectrum`
        From `~specutils_cinn.CINNParameterEstimator.emulated_spectrum`, usually at the
        posterior median: ``est.emulated_spectrum(spectrum, table[i])``.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw on (cleared); default a new one.
    wavelength_range : (float, float), optional
        Wavelength range to show, in the unit of ``fit.wavelength`` (Angstrom for the bundled
        models); default all.
    title : str, optional
        Title of the upper panel.

    Returns
    -------
    `matplotlib.figure.Figure`
        Two panels sharing the wavelength axis: ``fig.axes[0]`` the normalized flux (observed
        in black, emulated in red, pixels left out of ``fit_chi2`` as gray points), and
        ``fig.axes[1]`` the residual observed - emulated with the band of +-1 sigma (noise and
        emulator error in quadrature).
    """
    plt = _pyplot()
    wave = u.Quantity(fit.wavelength)
    x = wave.value
    mask = np.asarray(fit.mask, bool)
    flux = np.asarray(fit.flux, dtype=float)
    model = np.asarray(fit.emulated, dtype=float)
    used_flux = np.where(mask, np.nan, flux)
    resid = np.where(mask, np.nan, flux - model)
    sigma = np.sqrt(np.asarray(fit.uncertainty, float) ** 2
                    + np.nan_to_num(np.asarray(fit.error_floor, float)) ** 2)
    band = np.where(mask, np.nan, sigma)
    if fig is None:
        fig = plt.figure(figsize=(11.0, 5.0))
    else:
        fig.clear()
    ax, axr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    gx, gflux, gmodel, gresid, gband = _with_gaps(x, used_flux, model, resid, band)
    ax.plot(gx, gflux, color="k", lw=0.7, label="observed")
    ax.plot(gx, gmodel, color="C3", lw=0.8, label="emulated")
    ax.plot(x[mask], flux[mask], ".", color="0.6", ms=2, label="not used in fit")
    ax.set_ylabel("normalized flux")
    ax.legend(loc="lower right", fontsize="small", ncol=3)
    if title:
        ax.set_title(title)
    axr.fill_between(gx, -gband, gband, color="0.85", lw=0, label=r"$\pm 1\sigma$")
    axr.plot(gx, gresid, color="k", lw=0.6, label="observed - emulated")
    axr.axhline(0.0, color="C3", lw=0.8)
    axr.set_ylabel("residual")
    axr.set_xlabel(f"rest-frame wavelength [{wave.unit.to_string()}]")
    if wavelength_range is not None:
        axr.set_xlim(*wavelength_range)
    fig.subplots_adjust(hspace=0.05)
    return fig


def plot_kiel(
    table: Any,
    color: str | None = "fe_h",
    *,
    ax: Any = None,
    cmap: str = "viridis",
    flagged: int | None = None,
    **kwargs: Any,
) -> Any:
    """Kiel diagram (log g against Teff, both axes inverted) of a results table.

    Parameters
    ----------
    table : `~astropy.table.QTable`
        A table from `~specutils_cinn.CINNParameterEstimator.predict` (columns ``teff`` and
        ``logg``), or any table with those columns.
    color : str or None, optional
        Column that colors the points (with a color bar); None draws them in one color.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw on; default new axes on a new figure.
    cmap : str, optional
        Color map.
    flagged : int, optional
        Quality-flag bits (e.g. ``QualityFlag.POOR_FIT | QualityFlag.NO_FEATURES``): rows with
        any of them set are drawn as gray crosses instead of colored points.
    **kwargs
        Passed to `matplotlib.axes.Axes.scatter` for the colored points.

    Returns
    -------
    `matplotlib.axes.Axes`
        ``ax.collections[0]`` holds the colored points (rows with finite, unmasked ``teff``,
        ``logg`` and color value, not flagged), in table order.
    """
    plt = _pyplot()
    if ax is None:
        fig = plt.figure(figsize=(6.0, 5.0))
        ax = fig.add_subplot()
    teff, teff_unit = _column_values(table, "teff")
    logg, logg_unit = _column_values(table, "logg")
    ok = np.isfinite(teff) & np.isfinite(logg)
    cvals, cunit = (None, None) if color is None else _column_values(table, color)
    if cvals is not None:
        ok &= np.isfinite(cvals)
    bad = np.zeros(len(teff), bool)
    if flagged:
        bad = (np.asarray(table["flags"]) & int(flagged)) != 0
    good = ok & ~bad
    kwargs.setdefault("s", 12)
    if cvals is None:
        ax.scatter(teff[good], logg[good], color="k", **kwargs)
    else:
        points = ax.scatter(teff[good], logg[good], c=cvals[good], cmap=cmap, **kwargs)
        bar = ax.figure.colorbar(points, ax=ax)
        bar.set_label(parameter_label(color, cunit))
    if flagged:
        sel = bad & np.isfinite(teff) & np.isfinite(logg)
        ax.scatter(teff[sel], logg[sel], marker="x", color="0.6", s=kwargs["s"],
                   label="flagged")
        ax.legend(loc="upper left", fontsize="small")
    ax.set_xlabel(parameter_label("teff", teff_unit))
    ax.set_ylabel(parameter_label("logg", logg_unit))
    if not ax.xaxis_inverted():
        ax.invert_xaxis()
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    return ax


def _column_values(table: Any, name: str) -> tuple[np.ndarray, u.UnitBase | None]:
    """Float values of a column, NaN where masked, and its unit."""
    if name not in table.colnames:
        raise ValueError(f"the table has no column {name!r}")
    col = table[name]
    unit = getattr(col, "unit", None)
    mask = np.asarray(getattr(col, "mask", False)) & np.ones(len(col), bool)
    values = getattr(col, "unmasked", col)
    values = np.array(getattr(values, "value", values), dtype=float)
    if values.ndim != 1:
        raise ValueError(f"column {name!r} is not one value per row")
    values[mask] = np.nan
    return values, unit
