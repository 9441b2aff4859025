"""Posterior calibration: widening draws, fitting scale and floor, and its use by the estimator."""

import json

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.calibration import (
    LEGACY_CROSS_FIT_RULE,
    PosteriorCalibration,
    central_coverage,
    cross_fit_fold,
    fit_posterior_calibration,
)
from specutils_cinn.model import CINNModel


def _gaussian_draws(center, width, n_draws=4000, seed=0):
    rng = np.random.default_rng(seed)
    center, width = np.atleast_2d(center), np.atleast_2d(width)  # [N, D]
    z = rng.standard_normal((center.shape[0], n_draws, center.shape[1]))
    return center[:, None, :] + width[:, None, :] * z


def test_apply_keeps_medians_and_adds_scale_and_floor():
    cal = PosteriorCalibration(scale={"logg": 1.5}, floor={"logg": 0.2, "teff": 30.0})
    width = np.array([[50.0, 0.1, 0.3], [10.0, 0.5, 0.3]])
    draws = torch.as_tensor(_gaussian_draws([[5000.0, 4.0, 0.0], [6000.0, 2.0, -1.0]], width))
    out = cal.apply(draws, ["teff", "logg", "fe_h"]).numpy()
    raw = draws.numpy()
    np.testing.assert_allclose(np.median(out, axis=1), np.median(raw, axis=1), atol=1e-9)
    half = lambda d: 0.5 * (np.quantile(d, 0.84, axis=1) - np.quantile(d, 0.16, axis=1))  # noqa: E731
    h_raw, h_out = half(raw), half(out)
    s = np.array([1.0, 1.5, 1.0])
    f = np.array([30.0, 0.2, 0.0])
    np.testing.assert_allclose(h_out, np.sqrt((s * h_raw) ** 2 + f**2), rtol=1e-6)
    np.testing.assert_array_equal(out[:, :, 2], raw[:, :, 2])  # fe_h not calibrated
    # The shape is kept: the widened draws are an affine map of the raw ones per spectrum.
    assert np.corrcoef(out[0, :, 1], raw[0, :, 1])[0, 1] > 0.999999


def test_identity_and_degenerate_draws():
    draws = torch.full((2, 10, 1), 3.0)
    assert PosteriorCalibration().apply(draws, ["teff"]) is draws
    out = PosteriorCalibration(floor={"teff": 10.0}).apply(draws, ["teff"])
    assert torch.all(out == 3.0)  # zero-width posteriors stay put rather than give NaN
    with pytest.raises(ValueError, match=r"\[spectra, draws, 2\]"):
        PosteriorCalibration().apply(draws, ["teff", "logg"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": {"teff": 0.0}}, r"scale\['teff'\]"),
        ({"scale": {"teff": float("nan")}}, r"scale\['teff'\]"),
        ({"floor": {"logg": -0.1}}, r"floor\['logg'\]"),
        ({"info": [1]}, "info"),
    ],
)
def test_invalid_values_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PosteriorCalibration(**kwargs)


def test_dict_round_trip_and_bad_dicts():
    cal = PosteriorCalibration({"teff": 1.2}, {"teff": 15.0, "logg": 0.1}, {"stars": 39})
    d = json.loads(json.dumps(cal.to_dict()))
    assert PosteriorCalibration.from_dict(d) == cal
    assert cal.parameters == ["logg", "teff"]
    np.testing.assert_array_equal(cal.factors(["logg", "fe_h", "teff"])[0], [1.0, 1.0, 1.2])
    np.testing.assert_array_equal(cal.factors(["logg", "fe_h", "teff"])[1], [0.1, 0.0, 15.0])
    with pytest.raises(ValueError, match="unknown key"):
        PosteriorCalibration.from_dict({**d, "sigma": {}})
    with pytest.raises(ValueError, match="floor must be an object"):
        PosteriorCalibration.from_dict({"scale": {}})


def test_central_coverage():
    pit = np.array([0.5, 0.2, 0.9, 0.99])
    np.testing.assert_allclose(central_coverage(pit, (0.68, 0.95)), [0.5, 0.75])


def test_cross_fit_fold_legacy_rule():
    np.testing.assert_array_equal(
        cross_fit_fold(np.array([9, 19, 29, 109, 119]), LEGACY_CROSS_FIT_RULE),
        [True, False, True, True, False])


def test_cross_fit_fold_does_not_follow_a_regular_pattern_of_the_ids():
    """The held-out stars of the v2 grid are every tenth star of a Sobol design, whose first
    coordinate (Teff) alternates halves with the tens digit: the legacy rule split them into a
    warm and a cool fold. The hashed rule is balanced on any arithmetic progression of ids."""
    for ids in (np.arange(9, 20000, 10), np.arange(0, 4096), np.arange(0, 40000, 20)):
        fold = cross_fit_fold(ids)
        assert fold.dtype == bool and abs(fold.mean() - 0.5) < 0.03
        legacy = cross_fit_fold(ids, LEGACY_CROSS_FIT_RULE)
        assert abs(np.mean(fold == legacy) - 0.5) < 0.03  # unrelated to the tens parity
    # deterministic, elementwise, and the same for every array type of the ids
    ids = np.array([9, 19, 29, 109, 119, 2059])
    np.testing.assert_array_equal(cross_fit_fold(ids), [cross_fit_fold([i])[0] for i in ids])
    np.testing.assert_array_equal(cross_fit_fold(ids.astype(np.int32)), cross_fit_fold(ids))
    with pytest.raises(ValueError, match="unknown cross-fitting rule"):
        cross_fit_fold(ids, "fold A: even ids")
    with pytest.raises(ValueError, match="non-negative"):
        cross_fit_fold(np.array([-1, 3]))


def _overconfident_set(scale, floor, n=600, seed=1):
    """Truths, and Gaussian posteriors of half width w whose medians scatter about the truth
    by sqrt((scale w)^2 + floor^2), at two noise levels (groups)."""
    rng = np.random.default_rng(seed)
    group = np.repeat([0, 1], n // 2)
    w = np.where(group == 0, 0.05, 0.5)[:, None]
    truth = rng.uniform(-1, 1, (n, 1))
    center = truth + np.sqrt((scale * w) ** 2 + floor**2) * rng.standard_normal((n, 1))
    return _gaussian_draws(center, w, n_draws=800, seed=seed + 1), truth, group


def test_fit_recovers_scale_and_floor():
    draws, truth, group = _overconfident_set(1.5, 0.2)
    cal = fit_posterior_calibration(draws, truth, ["logg"], group)
    assert abs(cal.scale["logg"] - 1.5) < 0.2
    assert abs(cal.floor["logg"] - 0.2) < 0.05
    assert cal.info["loss_after"]["logg"] < 0.1 * cal.info["loss_before"]["logg"]
    # Fresh data from the same process: coverage after calibration is nominal in both groups.
    d2, t2, g2 = _overconfident_set(1.5, 0.2, seed=7)
    wide = cal.apply(torch.as_tensor(d2), ["logg"]).numpy()
    pit = np.mean(wide < t2[:, None, :], axis=1)[:, 0]
    for g in (0, 1):
        np.testing.assert_allclose(central_coverage(pit[g2 == g], (0.68, 0.95)), [0.68, 0.95],
                                   atol=0.06)


def test_fit_leaves_calibrated_posteriors_alone():
    draws, truth, group = _overconfident_set(1.0, 0.0)
    cal = fit_posterior_calibration(draws, truth, ["teff"], group, scales=np.arange(1, 3, 0.05))
    assert cal.scale["teff"] <= 1.1 and cal.floor["teff"] <= 0.02


def test_fit_narrows_underconfident_posteriors_only_when_scales_below_1_are_allowed():
    draws, truth, group = _overconfident_set(0.6, 0.0)      # intervals too wide
    default = fit_posterior_calibration(draws, truth, ["logg"], group)
    assert default.scale["logg"] == 1.0 and default.floor["logg"] == 0.0
    narrow = fit_posterior_calibration(draws, truth, ["logg"], group,
                                       scales=np.arange(0.5, 3.0001, 0.05))
    assert abs(narrow.scale["logg"] - 0.6) < 0.1
    assert narrow.info["loss_after"]["logg"] < 0.1 * narrow.info["loss_before"]["logg"]


def test_calibrate_posteriors_checks_min_scale_first(tmp_path):
    from specutils_cinn.calibration.heldout import calibrate_posteriors

    for bad in (0.0, -1.0, 3.5, float("nan")):
        with pytest.raises(ValueError, match="min_scale"):
            calibrate_posteriors(tmp_path / "no-model", tmp_path / "no-grid", "0.0.1",
                                 tmp_path / "out", min_scale=bad)
    assert not (tmp_path / "out").exists()


def test_fit_input_checks():
    draws, truth, group = _overconfident_set(1.0, 0.0, n=10)
    with pytest.raises(ValueError, match="do not match"):
        fit_posterior_calibration(draws, truth[:5], ["teff"])
    with pytest.raises(ValueError, match="parameter names"):
        fit_posterior_calibration(draws, truth, ["teff", "logg"])
    bad = np.full_like(draws, np.nan)
    with pytest.raises(ValueError, match="at least 2"):
        fit_posterior_calibration(bad, truth, ["teff"])


# ----------------------------------------------------------------------------- through the model
@pytest.fixture(scope="module")
def calibrated(linear_gaussian_model, tmp_path_factory):
    prob, model = linear_gaussian_model
    cal = PosteriorCalibration(scale={"teff": 2.0}, floor={"logg": 0.3}, info={"test": True})
    md = model.metadata.replace(version="0.0.2", posterior_calibration=cal)
    path = tmp_path_factory.mktemp("calibrated")
    CINNModel(md, model.network).save(path)
    return prob, CINNParameterEstimator(CINNModel.load(path), device="cpu"), cal


def test_metadata_round_trip_and_summary(calibrated):
    _, est, cal = calibrated
    md = est.model.metadata
    assert md.posterior_calibration == cal
    assert md.to_dict()["posterior_calibration"]["floor"] == {"logg": 0.3}
    assert "posterior calibration (scale (+) floor): teff x2 (+) 0, logg x1 (+) 0.3" in (
        est.model.summary())
    with pytest.raises(ValueError, match=r"'posterior_calibration': parameters \['fe_h'\]"):
        md.replace(posterior_calibration={"scale": {"fe_h": 1.2}, "floor": {}})
    with pytest.raises(ValueError, match=r"posterior_calibration.*scale\['teff'\]"):
        md.replace(posterior_calibration={"scale": {"teff": -1}, "floor": {}})
    assert "posterior_calibration" not in md.replace(posterior_calibration=None).to_dict()


def test_estimator_applies_it_and_can_skip_it(calibrated, linear_gaussian_model):
    prob, est, _ = calibrated
    _, plain_model = linear_gaussian_model
    plain = CINNParameterEstimator(plain_model, device="cpu")
    y, _ = prob.observations(n=6, seed=5)
    spec = Spectrum(flux=y * u.one, spectral_axis=prob.grid.wavelength,
                    uncertainty=StdDevUncertainty(np.full(y.shape, prob.sigma)))
    kw = {"n_samples": 2000, "seed": 9, "normalize": False, "progress": False}
    cal_t = est.predict(spec, **kw)
    raw_t = est.predict(spec, calibrated=False, **kw)
    ref_t = plain.predict(spec, **kw)
    assert cal_t.meta["POSTCAL"] is True and raw_t.meta["POSTCAL"] is False
    assert ref_t.meta["POSTCAL"] is False  # a model without a calibration
    for p in ("teff", "logg"):
        np.testing.assert_allclose(cal_t[p].value, raw_t[p].value, rtol=1e-6)
        np.testing.assert_array_equal(raw_t[f"{p}_std"].value, ref_t[f"{p}_std"].value)
    ratio = cal_t["teff_std"].value / raw_t["teff_std"].value
    np.testing.assert_allclose(ratio, 2.0, rtol=0.02)
    h_raw = 0.5 * (raw_t["logg_p84"].value - raw_t["logg_p16"].value)
    h_cal = 0.5 * (cal_t["logg_p84"].value - cal_t["logg_p16"].value)
    np.testing.assert_allclose(h_cal, np.sqrt(h_raw**2 + 0.3**2), rtol=0.02)
    s = est.sample_posterior(spec, calibrated=False, **kw)
    s_ref = plain.sample_posterior(spec, **kw)
    np.testing.assert_array_equal(s["teff"].value, s_ref["teff"].value)
    with pytest.raises(ValueError, match="calibrated must be True or False"):
        est.predict(spec, calibrated="yes", **kw)


def test_predict_summarizes_the_calibrated_draws(calibrated):
    prob, est, _ = calibrated
    y, _ = prob.observations(n=4, seed=8)
    spec = Spectrum(flux=y * u.one, spectral_axis=prob.grid.wavelength,
                    uncertainty=StdDevUncertainty(np.full(y.shape, prob.sigma)))
    kw = {"n_samples": 500, "seed": 4, "normalize": False, "progress": False}
    t = est.predict(spec, quantiles=(0.025, 0.16, 0.84), **kw)
    s = est.sample_posterior(spec, **kw)
    for p in ("teff", "logg"):
        d = s[p].value
        np.testing.assert_allclose(t[p].value, np.median(d, axis=1), rtol=1e-5)
        for q, col in ((0.025, "p2_5"), (0.16, "p16"), (0.84, "p84")):
            np.testing.assert_allclose(t[f"{p}_{col}"].value, np.quantile(d, q, axis=1),
                                       rtol=1e-4)
        np.testing.assert_allclose(t[f"{p}_std"].value, np.std(d, axis=1, ddof=1), rtol=1e-3)


def test_width_scale_interpolates_in_log_width_and_round_trips():
    cal = PosteriorCalibration({"teff": 1.2}, {"logg": 0.0},
                               width_scale={"logg": [[0.01, 0.5], [0.1, 1.0]]})
    half = torch.tensor([0.005, 0.01, 10 ** -1.5, 0.1, 1.0], dtype=torch.float64)
    q16 = torch.stack([torch.full_like(half, 5000.0), torch.full_like(half, 4.0)], dim=1)
    q84 = q16 + torch.stack([torch.full_like(half, 200.0), 2 * half], dim=1)
    k = cal.widening(q16, q84, ["teff", "logg"])
    np.testing.assert_allclose(k[:, 0], 1.2)
    np.testing.assert_allclose(k[:, 1], [0.5, 0.5, 0.75, 1.0, 1.0])   # constant beyond the ends
    assert PosteriorCalibration.from_dict(cal.to_dict()) == cal
    assert "width_scale" not in PosteriorCalibration({"teff": 1.0}, {}).to_dict()
    s, _ = cal.factors(["teff", "logg", "fe_h"])
    assert s[0] == 1.2 and np.isnan(s[1]) and s[2] == 1.0
    draws = 4.0 + 0.02 * torch.randn(1, 4000, 1, generator=torch.Generator().manual_seed(2))
    narrow = cal.apply(draws.double(), ["logg"])                      # half width 0.02: s < 1
    assert 0.5 < float(narrow.std() / draws.double().std()) < 0.75


@pytest.mark.parametrize("nodes", [[[0.1, 1.0], [0.01, 0.5]], [[0.0, 1.0]], [[0.1, -1.0]],
                                   [[0.1]], "x", [[np.nan, 1.0]]])
def test_width_scale_rejects_bad_nodes(nodes):
    with pytest.raises(ValueError, match="width_scale"):
        PosteriorCalibration({}, {}, width_scale={"logg": nodes})


def test_fit_by_width_narrows_only_where_the_posteriors_are_too_wide():
    rng = np.random.default_rng(0)
    n = 2000
    group = np.repeat([0, 1], n // 2)
    w = np.where(group == 0, 0.05, 0.5)[:, None]
    true_scale = np.where(group == 0, 0.6, 1.0)[:, None]   # the narrow posteriors are too wide
    truth = rng.uniform(-1, 1, (n, 1))
    center = truth + true_scale * w * rng.standard_normal((n, 1))
    draws = _gaussian_draws(center, w, n_draws=800, seed=1)
    scales = np.arange(0.5, 3.0001, 0.05)
    cal = fit_posterior_calibration(draws, truth, ["logg"], group, scales=scales, by_width=True)
    (w0, s0), (w1, s1) = cal.width_scale["logg"]
    assert w0 == pytest.approx(0.05, rel=0.1) and w1 == pytest.approx(0.5, rel=0.1)
    assert abs(s0 - 0.6) < 0.1 and abs(s1 - 1.0) < 0.1
    single = fit_posterior_calibration(draws, truth, ["logg"], group, scales=scales)
    assert cal.info["loss_after"]["logg"] < 0.2 * single.info["loss_after"]["logg"]
    with pytest.raises(ValueError, match="two groups"):
        fit_posterior_calibration(draws, truth, ["logg"], None, by_width=True)


def test_describe_names_the_nodes_of_a_width_dependent_scale():
    cal = PosteriorCalibration({"teff": 1.5}, {"teff": 10.0, "logg": 0.02},
                               width_scale={"logg": [[0.01, 0.5], [0.1, 1.0]]})
    assert cal.describe("teff") == "x1.5 (+) 10"
    assert cal.describe("logg") == "x0.5@0.01 x1@0.1 (+) 0.02"
    assert cal.describe("fe_h") == "x1 (+) 0"
