"""Plot helpers: the figures and axes exist and show exactly the data they were given."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from specutils_cinn import plotting  # noqa: E402
from specutils_cinn.fit_check import EmulatedSpectrum  # noqa: E402
from specutils_cinn.parameters import parameter_unit  # noqa: E402
from specutils_cinn.results import samples_table  # noqa: E402

PARAMS = ["teff", "logg", "fe_h", "mg_fe"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _samples():
    rng = np.random.default_rng(5)
    draws = (rng.normal(size=(2, 300, 4)) * [50, 0.1, 0.05, 0.03]
             + [5700, 4.4, 0.0, 0.1]).astype(np.float32)
    units = [parameter_unit(p) for p in PARAMS]
    return samples_table(PARAMS, units, draws, np.array([50.0, 60.0]), np.ones(2),
                         np.zeros(2, int), unconstrained=["mg_fe"]), draws


def _finite(a):
    a = np.asarray(a, dtype=float)
    return a[np.isfinite(a)]


def test_labels_as_astronomers_write_them():
    assert plotting.parameter_label("teff", u.K) == r"$T_\mathrm{eff}$ [K]"
    assert plotting.parameter_label("logg", u.dex(u.cm / u.s**2)) == r"$\log g$ [cm s$^{-2}$]"
    assert plotting.parameter_label("fe_h", u.dex) == "[Fe/H] [dex]"
    assert plotting.parameter_label("vsini", u.km / u.s) == r"$v \sin i$ [km s$^{-1}$]"
    assert plotting.parameter_label("snr") == "snr"


def test_corner_plot_shows_the_draws_of_the_chosen_row():
    table, draws = _samples()
    fig = plotting.plot_corner(table, index=1, truths={"teff": 5700.0})
    n = 3  # mg_fe is masked (not constrained): left out
    axes = np.array(fig.axes).reshape(n, n)
    assert not axes[0, 1].get_visible() and axes[1, 0].get_visible()
    d = draws[1].astype(float)
    # lower panels: the pairs of draws, exactly
    np.testing.assert_array_equal(axes[1, 0].collections[0].get_offsets(), d[:, [0, 1]])
    np.testing.assert_array_equal(axes[2, 1].collections[0].get_offsets(), d[:, [1, 2]])
    # diagonal: histogram over the draws' range, quantile lines at the 16/50/84 % quantiles
    for k in range(n):
        ax = axes[k, k]
        xy = ax.patches[0].get_xy()
        assert np.isclose(xy[:, 0].min(), d[:, k].min()) and np.isclose(xy[:, 0].max(),
                                                                         d[:, k].max())
        dashed = [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"]
        np.testing.assert_allclose(dashed, np.quantile(d[:, k], [0.16, 0.5, 0.84]))
    truth = [line.get_xdata()[0] for line in axes[0, 0].lines if line.get_linestyle() == "-"]
    assert truth == [5700.0]
    assert axes[2, 0].get_xlabel() == r"$T_\mathrm{eff}$ [K]"
    assert axes[2, 0].get_ylabel() == "[Fe/H] [dex]"


def test_corner_plot_of_a_row_and_chosen_parameters():
    table, draws = _samples()
    fig = plotting.plot_corner(table[0], parameters=["logg", "mg_fe"], quantiles=())
    assert len(fig.axes) == 4
    np.testing.assert_array_equal(fig.axes[2].collections[0].get_offsets(),
                                  draws[0][:, [1, 3]].astype(float))
    assert not [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]


def test_corner_plot_refuses_rows_without_draws():
    table, _ = _samples()
    table["teff"][1] = np.nan * u.K
    with pytest.raises(ValueError, match="no finite draws"):
        plotting.plot_corner(table, index=1, parameters=["teff"])
    with pytest.raises(ValueError, match="not a column"):
        plotting.plot_corner(table, parameters=["vmic"])


def _fit():
    wave = np.concatenate([np.arange(4000.0, 4010.0, 0.5), np.arange(5000.0, 5010.0, 0.5)])
    rng = np.random.default_rng(6)
    model = 1.0 - 0.3 * np.exp(-0.5 * ((wave % 10) - 5) ** 2)
    flux = model + rng.normal(0, 0.01, wave.size)
    mask = np.zeros(wave.size, bool)
    mask[[2, 3, 25]] = True
    return EmulatedSpectrum(wave * u.AA, flux, np.full(wave.size, 0.01), model, mask,
                            np.full(wave.size, 0.005))


def test_spectrum_fit_plot_shows_observed_emulated_residuals_and_masked_pixels():
    fit = _fit()
    fig = plotting.plot_spectrum_fit(fit, title="Sun")
    ax, axr = fig.axes
    observed, emulated, masked = ax.lines[:3]
    keep = ~fit.mask
    np.testing.assert_array_equal(_finite(observed.get_ydata()), fit.flux[keep])
    np.testing.assert_array_equal(_finite(emulated.get_ydata()), fit.emulated)
    np.testing.assert_array_equal(masked.get_xdata(), fit.wavelength.value[fit.mask])
    np.testing.assert_array_equal(masked.get_ydata(), fit.flux[fit.mask])
    residual = [line for line in axr.lines if line.get_label() == "observed - emulated"][0]
    np.testing.assert_allclose(_finite(residual.get_ydata()), (fit.flux - fit.emulated)[keep])
    # the line breaks between the two grid segments (4010 -> 5000 A)
    x = observed.get_xdata()
    gap = np.flatnonzero(np.isnan(x))
    assert gap.size == 1 and x[gap[0] - 1] < 4010 < 5000 <= x[gap[0] + 1]
    assert ax.get_title() == "Sun" and "Angstrom" in axr.get_xlabel()


def test_kiel_diagram_colored_by_a_column():
    t = QTable()
    t["teff"] = [5772.0, 4800.0, np.nan, 6200.0, 5100.0] * u.K
    t["logg"] = u.Dex([4.44, 2.5, 4.0, 4.1, 3.2], u.dex(u.cm / u.s**2))
    t["fe_h"] = [0.0, -0.5, 0.1, 0.2, -1.0] * u.dex
    t["flags"] = np.array([0, 0, 0, 64, 0], dtype=np.int32)
    ax = plotting.plot_kiel(t, color="fe_h", flagged=64)
    points = ax.collections[0]
    rows = [0, 1, 4]  # NaN teff left out, the flagged row drawn apart
    np.testing.assert_array_equal(points.get_offsets(),
                                  np.c_[t["teff"].value[rows], t["logg"].value[rows]])
    np.testing.assert_array_equal(points.get_array(), t["fe_h"].value[rows])
    np.testing.assert_array_equal(ax.collections[1].get_offsets(), [[6200.0, 4.1]])
    assert ax.xaxis_inverted() and ax.yaxis_inverted()
    assert ax.get_ylabel() == r"$\log g$ [cm s$^{-2}$]"
    colorbar_ax = [a for a in ax.figure.axes if a is not ax][0]
    assert colorbar_ax.get_ylabel() == "[Fe/H] [dex]"


def test_kiel_diagram_without_color_on_given_axes():
    t = QTable({"teff": [5000.0, 6000.0] * u.K, "logg": [4.0, 4.5] * u.dex})
    fig, ax = plt.subplots()
    assert plotting.plot_kiel(t, color=None, ax=ax) is ax
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), [[5000, 4.0], [6000, 4.5]])
    with pytest.raises(ValueError, match="no column 'fe_h'"):
        plotting.plot_kiel(t)


def test_spectrum_fit_of_the_sun_with_the_bundled_model():
    from importlib import resources

    from specutils import Spectrum

    from specutils_cinn import CINNParameterEstimator

    est = CINNParameterEstimator.from_pretrained(device="cpu")
    path = resources.files("specutils_cinn") / "data" / "sun_4most_hr_example.fits"
    with resources.as_file(path) as p:
        sun = Spectrum.read(p, format="tabular-fits")
    table = est.predict(sun, n_samples=100, seed=1, progress=False)
    fit = est.emulated_spectrum(sun, table[0])
    fig = plotting.plot_spectrum_fit(fit)
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(_finite(fig.axes[0].lines[0].get_ydata()),
                                  _finite(np.where(fit.mask, np.nan, fit.flux)))
