"""PredictionOptions: every option checked once, before any work, with an error naming it."""

import dataclasses

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.options import PredictionOptions

#: (bad option, the name the error must give)
BAD_OPTIONS = [
    ({"n_samples": 1}, "n_samples"),
    ({"n_samples": 10.0}, "n_samples"),
    ({"n_samples": True}, "n_samples"),
    ({"quantiles": (0.5, 1.5)}, "quantiles"),
    ({"quantiles": ()}, "quantiles"),
    ({"quantiles": "median"}, "quantiles"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"device": "tpu"}, "device"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**63}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"radial_velocity": 10.0}, "radial_velocity"),
    ({"radial_velocity": 10.0 * u.K}, "radial_velocity"),
    ({"radial_velocity": np.zeros((2, 2)) * u.km / u.s}, "radial_velocity"),
    ({"radial_velocity": 4e5 * u.km / u.s}, "radial"),  # "radial velocities must be ..."
    ({"radial_velocity": np.nan * u.km / u.s}, "radial"),
    ({"progress": "yes"}, "progress"),
    ({"progress": 1}, "progress"),
    ({"medium": "water"}, "medium"),
    ({"medium": ["air"]}, "medium"),
    ({"snr": -1.0}, "snr"),
    ({"snr": [10.0, np.inf]}, "snr"),
    ({"snr": np.ones((2, 2))}, "snr"),
    ({"snr": "guess"}, "snr"),
    ({"snr": 10.0 * u.km}, "snr"),
    ({"snr": object()}, "snr"),
    ({"normalize": "yes"}, "normalize"),
    ({"normalize": 1}, "normalize"),
    ({"fit_chi2_threshold": -1.0}, "fit_chi2_threshold"),
    ({"fit_chi2_threshold": 0}, "fit_chi2_threshold"),
    ({"fit_chi2_threshold": np.inf}, "fit_chi2_threshold"),
    ({"fit_chi2_threshold": "3"}, "fit_chi2_threshold"),
    ({"fit_chi2_threshold": True}, "fit_chi2_threshold"),
    ({"calibrated": "yes"}, "calibrated"),
    ({"calibrated": 1}, "calibrated"),
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_OPTIONS)
def test_each_bad_option_is_refused_with_its_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PredictionOptions(**kwargs)


def test_defaults_are_those_of_predict():
    import inspect

    opts = PredictionOptions()
    signature = inspect.signature(CINNParameterEstimator.predict)
    for field in dataclasses.fields(PredictionOptions):
        assert getattr(opts, field.name) == signature.parameters[field.name].default, field.name
    # and sample_posterior takes the same options, except the quantiles it does not report
    sample = inspect.signature(CINNParameterEstimator.sample_posterior).parameters
    assert {f.name for f in dataclasses.fields(PredictionOptions)} - set(sample) == {"quantiles"}


def test_values_are_normalized_and_valid_ones_accepted():
    opts = PredictionOptions(
        n_samples=np.int64(20), quantiles=[0.25, np.float32(0.75)], batch_size=3,
        device="cpu", seed=np.uint32(7), radial_velocity=[1.0, -2.0] * u.m / u.s,
        progress=lambda done, total: None, medium="vacuum", snr=[10.0, 20.0],
        normalize=np.bool_(False), fit_chi2_threshold=np.float32(2.5),
        calibrated=np.bool_(True),
    )
    assert opts.quantiles == (0.25, 0.75) and all(type(q) is float for q in opts.quantiles)
    assert opts.device == torch.device("cpu")
    assert opts.seed == 7 and type(opts.seed) is int
    assert opts.calibrated is True
    for snr in (None, "estimate", 50, 5.0 * u.one):
        PredictionOptions(snr=snr)
    for threshold in (None, 3, 2.5, np.float64(1e3)):
        PredictionOptions(fit_chi2_threshold=threshold)


def test_frozen_and_replace_checks_again():
    opts = PredictionOptions(seed=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.n_samples = 5
    assert dataclasses.replace(opts, n_samples=5).n_samples == 5
    with pytest.raises(ValueError, match="n_samples"):
        dataclasses.replace(opts, n_samples=0)


def test_with_seed_draws_once_and_keeps_a_given_seed():
    given = PredictionOptions(seed=0)
    assert given.with_seed() is given
    drawn = PredictionOptions().with_seed()
    assert isinstance(drawn.seed, int) and 0 <= drawn.seed < 2**32
    assert drawn.with_seed() is drawn


def test_on_device():
    assert PredictionOptions().on_device(torch.device("cpu")) == torch.device("cpu")
    assert PredictionOptions(device="cpu").on_device(torch.device("meta")).type == "cpu"


# ------------------------------------------------- the estimator checks before any work
@pytest.fixture(scope="module")
def est_and_spectrum(linear_gaussian_model):
    prob, model = linear_gaussian_model
    est = CINNParameterEstimator(model, device="cpu")
    y, _ = prob.observations(n=2, seed=5)
    spectrum = Spectrum(flux=y * u.one, spectral_axis=prob.grid.wavelength,
                        uncertainty=StdDevUncertainty(np.full(y.shape, prob.sigma)))
    return est, spectrum


def _refuse_work(monkeypatch):
    import specutils_cinn.estimator as estimator_module

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    for name in ("read_paths", "prepare_spectra", "draw_batches"):
        monkeypatch.setattr(estimator_module, name, no_work)


@pytest.mark.parametrize(
    ("method", "kwargs", "name"),
    [("predict", kw, m) for kw, m in BAD_OPTIONS]
    + [("sample_posterior", kw, m) for kw, m in BAD_OPTIONS if "quantiles" not in kw],
)
def test_inference_methods_check_every_option_before_reading(est_and_spectrum, monkeypatch,
                                                             method, kwargs, name):
    est, _ = est_and_spectrum
    _refuse_work(monkeypatch)
    # a file that does not exist: the options are refused before it is looked for
    with pytest.raises(ValueError, match=name):
        getattr(est, method)("/nonexistent/spectrum.fits", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [(kw, m) for kw, m in BAD_OPTIONS
     if set(kw) <= {"radial_velocity", "medium", "snr", "normalize", "device"}],
)
def test_emulated_spectrum_checks_its_options_first(est_and_spectrum, monkeypatch, kwargs, name):
    est, spectrum = est_and_spectrum
    _refuse_work(monkeypatch)
    with pytest.raises(ValueError, match=name):
        est.emulated_spectrum(spectrum, np.zeros(len(est.parameters)), **kwargs)


def test_emulated_spectrum_with_good_options_reaches_its_own_checks(est_and_spectrum):
    est, spectrum = est_and_spectrum  # the test model has no emulator
    with pytest.raises(ValueError, match="no spectrum emulator"):
        est.emulated_spectrum(spectrum, np.zeros(len(est.parameters)), medium="air")
