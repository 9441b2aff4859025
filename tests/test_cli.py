"""The specutils-cinn command line."""

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from astropy.table import QTable
from specutils import Spectrum

from specutils_cinn import cli
from specutils_cinn.models import CINNModel


@pytest.fixture(scope="module")
def model_dir(linear_gaussian_model, tmp_path_factory):
    _, model = linear_gaussian_model
    path = tmp_path_factory.mktemp("model")
    model.save(path)
    return path


def _write_spectra(prob, tmp_path, n=3):
    y, _ = prob.observations(n=n, seed=8)
    paths = []
    for i, row in enumerate(y):
        unit = u.Unit("1e-17 erg / (s cm2 Angstrom)")
        spec = Spectrum(flux=row * unit, spectral_axis=prob.grid.wavelength,
                        uncertainty=StdDevUncertainty(np.full(row.shape, prob.sigma) * unit))
        p = tmp_path / f"star{i}.fits"
        spec.write(p, format="tabular-fits")
        paths.append(str(p))
    return paths


def test_predict_writes_table_in_file_order(linear_gaussian_model, model_dir, tmp_path, capsys):
    prob, _ = linear_gaussian_model
    paths = _write_spectra(prob, tmp_path)
    out = tmp_path / "res.ecsv"
    rc = cli.main(["predict", *paths, "--model", str(model_dir), "-o", str(out),
                   "--format", "tabular-fits", "-n", "200", "--seed", "1", "--normalize", "no"])
    assert rc == 0
    t = QTable.read(out)
    assert list(t["filename"]) == ["star0.fits", "star1.fits", "star2.fits"]
    assert t["teff"].unit == u.K and t.meta["NSAMPLES"] == 200
    assert "wrote 3 rows" in capsys.readouterr().err


def test_predict_unreadable_file_names_it(model_dir, tmp_path):
    bad = tmp_path / "junk.fits"
    bad.write_text("not a fits file")
    with pytest.raises(SystemExit, match="junk.fits"):
        cli.main(["predict", str(bad), "--model", str(model_dir), "-o", str(tmp_path / "o.ecsv")])


def test_models_list_shows_bundled_models(capsys):
    assert cli.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "4most-hr-lte" in out and "4most-lr-lte" in out and "4most-hr-lte-seed" in out


def test_models_info(capsys):
    assert cli.main(["models", "info", "4most-lr"]) == 0
    out = capsys.readouterr().out
    assert "4most-lr-lte-v1.2.0" in out and "li_fe" in out
    assert "posterior calibration (scale (+) floor): teff x" in out


def test_demo_runs_offline_on_bundled_model(capsys, tmp_path):
    assert cli.main(["demo", "-n", "200", "-o", str(tmp_path / "demo.ecsv")]) == 0
    out = capsys.readouterr().out
    assert "teff" in out and "4most-hr-lte-v1.2.0" in out
    t = QTable.read(tmp_path / "demo.ecsv")
    assert len(t) == 1
    # The Sun (5772 K, log g 4.44, [Fe/H] 0). The LTE model 4most-hr-lte-v1.1.0 (v1.2.0: same network) gives 5734-5741 K,
    # log g 4.21-4.22, [Fe/H] -0.196..-0.194 for sampling seeds 1-3 (16-84 % about +-25 K,
    # +-0.11, +-0.03); the windows leave room for CPU/torch differences. They catch e.g. the
    # HARPS CCD gap (stored as zeros) reaching the network unmasked (flagged POOR_FIT).
    assert 5600 < t["teff"][0].value < 5950
    assert 4.05 < t["logg"][0].value < 4.45
    assert -0.35 < t["fe_h"][0].value < 0.0
    # the masked gap (5304.4-5337.9 A) is 2.7% of the model's pixels
    assert 0.96 < t["coverage"][0] < 0.98
    assert t["flags"][0] == 0


def test_predict_uncalibrated_gives_the_network_draws(tmp_path):
    from pathlib import Path

    example = Path(cli.__file__).parent / "data" / cli.EXAMPLE_SPECTRUM
    out = {}
    for extra in ([], ["--uncalibrated"]):
        path = tmp_path / f"sun{len(extra)}.ecsv"
        assert cli.main(["predict", str(example), "-o", str(path), "-n", "400", "--seed", "2",
                         "--format", "tabular-fits", "--device", "cpu", *extra]) == 0
        out[bool(extra)] = QTable.read(path)
    cal, raw = out[False], out[True]
    assert cal.meta["POSTCAL"] is True and raw.meta["POSTCAL"] is False
    np.testing.assert_allclose(cal["logg"].value, raw["logg"].value, rtol=1e-6)
    # the bundled model widens log g (scale > 1 and a floor): wider 16-84 % interval
    width = {k: (t["logg_p84"] - t["logg_p16"]).value[0] for k, t in out.items()}
    assert width[False] > 1.2 * width[True]


def test_train_command_errors_cleanly(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\n")
    assert cli.main(["train", str(cfg)]) == 2
    assert "missing [data]" in capsys.readouterr().err


def test_bundled_models_load_and_match_registry():
    from specutils_cinn.registry import REGISTRY, fetch_model

    for name in ("4most-hr", "4most-lr"):
        model = CINNModel.load(fetch_model(name))
        assert model.metadata.full_name == REGISTRY.resolve(name)
        assert model.metadata.normalization["kind"] == "pseudo-continuum"
        assert "LTE" in model.metadata.description
