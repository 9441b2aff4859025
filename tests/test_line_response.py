"""scripts/line_response.py: the posterior's response to one line, on the bundled HR model."""

import numpy as np
import pytest
from repo_scripts import script_module

from specutils_cinn import CINNParameterEstimator


@pytest.fixture(scope="module")
def script():
    with script_module("line_response") as module:
        yield module


@pytest.fixture(scope="module")
def estimator():
    return CINNParameterEstimator.from_pretrained(None, device="cpu")


def test_responses_of_a_learned_abundance(script, estimator, monkeypatch):
    monkeypatch.setattr(script, "STARS", {k: script.STARS[k] for k in ("Sun", "K giant")})
    monkeypatch.setattr(script, "LINES", (
        ("ca_fe", "Ca I 6162.2", 6162.17, 0.4),
        ("mn_fe", "Mn I 4030.8", 4030.76, 0.35),   # the HB arm: not on this model's grid
        ("ca_fe", "nowhere", 9000.0, 0.4),         # outside every segment
    ))
    per_parameter, per_line = script.line_responses(estimator, delta=0.1, snr=250.0, seeds=1,
                                                    n_samples=300)
    assert [r["line"] for r in per_line] == ["Ca I 6162.2"]
    (ca,) = per_parameter
    assert ca["parameter"] == "ca_fe"
    # [Ca/Fe] is learned: a change of the whole spectrum is read nearly in full ...
    assert np.all(np.abs(ca["all_response"] - 1.0) < 0.3)
    # ... and one of its many lines moves the median by a small, positive share
    line = per_line[0]
    assert np.all((line["expected"] > 0) & (line["expected"] < 0.5))
    assert np.all((line["line_response"] > 0) & (line["line_response"] < 0.5))
    # the training noise only adds to the photon noise
    assert np.all(ca["training"] >= ca["photon"]) and np.all(ca["photon"] > 0)
    text = script.report(per_parameter, per_line, "header")
    assert "Ca I 6162.2" in text and "Mn I" not in text


def test_star_values_stay_in_the_training_ranges(script, estimator):
    v = script.star_values(estimator, 9000.0, 6.0, -5.0, 1.0, 2.0)
    ranges = np.asarray(estimator.model.metadata.ranges)
    assert np.all((v >= ranges[:, 0]) & (v <= ranges[:, 1]))
    assert v[estimator.parameters.index("teff")] == ranges[0, 1]


def test_bad_arguments(script):
    with pytest.raises(SystemExit):
        script.main(["--delta", "0"])
    with pytest.raises(SystemExit):
        script.main(["--rst", "/nonexistent/folder/x.rst"])
