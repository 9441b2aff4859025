"""The specutils-cinn command line."""

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from astropy.table import QTable
from specutils import Spectrum

from specutils_cinn import cli
from specutils_cinn.model import CINNModel


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


def test_predict_unreadable_file_is_recorded(linear_gaussian_model, model_dir, tmp_path,
                                             capsys):
    """An unreadable file gets a row with its error; the other files their results."""
    prob, _ = linear_gaussian_model
    paths = _write_spectra(prob, tmp_path, n=2)
    bad = tmp_path / "junk.fits"
    bad.write_text("not a fits file")
    out = tmp_path / "o.ecsv"
    rc = cli.main(["predict", paths[0], str(bad), paths[1], "--model", str(model_dir),
                   "-o", str(out), "-n", "100", "--normalize", "no"])
    assert rc == 0
    assert "1 without a result" in capsys.readouterr().err
    t = QTable.read(out)
    assert list(t["filename"]) == ["star0.fits", "junk.fits", "star1.fits"]
    assert list(t["source"]) == [paths[0], str(bad), paths[1]]
    assert t["status"][0] == t["status"][2] == "ok" and t["status"][1].startswith("error:")
    assert np.isnan(t["teff"][1]) and np.isfinite(t["teff"][0])


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
    # The Sun (5772 K, log g 4.44, [Fe/H] 0). The LTE model 4most-hr-lte-v1.1.0 (v1.2.0: same
    # network) gives 5734-5741 K, log g 4.21-4.22, [Fe/H] -0.196..-0.194 for sampling seeds 1-3
    # (16-84 % about +-25 K, +-0.11, +-0.03); the windows leave room for CPU/torch differences.
    # They catch e.g. the HARPS CCD gap (stored as zeros) reaching the network unmasked (flagged
    # POOR_FIT).
    assert 5600 < t["teff"][0].value < 5950
    assert 4.05 < t["logg"][0].value < 4.45
    assert -0.35 < t["fe_h"][0].value < 0.0
    # the masked gap (5304.4-5337.9 A) is 2.7% of the model's pixels
    assert 0.96 < t["coverage"][0] < 0.98
    assert t["flags"][0] == 0


def test_predict_uncalibrated_gives_the_network_draws(tmp_path):
    from pathlib import Path

    example = Path(cli.__file__).parents[1] / "data" / cli.EXAMPLE_SPECTRUM
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
    from specutils_cinn.model import REGISTRY, fetch_model

    for name in ("4most-hr", "4most-lr"):
        model = CINNModel.load(fetch_model(name))
        assert model.metadata.full_name == REGISTRY.resolve(name)
        assert model.metadata.normalization.kind == "pseudo-continuum"
        assert "LTE" in model.metadata.description


# ----------------------------------------------------------- trust: checks before any work
@pytest.fixture
def no_work(monkeypatch):
    """Make reading spectra, loading a model and inference fail if the CLI gets that far."""
    from specutils_cinn.estimator import CINNParameterEstimator

    def fail(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    import specutils_cinn.survey.run as survey_run

    monkeypatch.setattr(survey_run, "plan_inputs", fail)
    monkeypatch.setattr(survey_run, "cached_estimator", fail)
    monkeypatch.setattr(CINNParameterEstimator, "from_pretrained", fail)
    monkeypatch.setattr(CINNParameterEstimator, "predict", fail)


@pytest.mark.parametrize(
    ("case", "message"),
    [("exists", "exists; pass --overwrite"), ("missing directory", "does not exist"),
     ("unknown extension", "cannot tell the table format"), ("a directory", "is a directory")],
)
def test_predict_output_is_checked_before_any_work(linear_gaussian_model, model_dir, tmp_path,
                                                   capsys, no_work, case, message):
    prob, _ = linear_gaussian_model
    paths = _write_spectra(prob, tmp_path, n=1)
    out = {"exists": tmp_path / "res.ecsv", "missing directory": tmp_path / "no" / "res.ecsv",
           "unknown extension": tmp_path / "res.xyz", "a directory": tmp_path}[case]
    if case == "exists":
        out.write_text("earlier results\n")
    rc = cli.main(["predict", *paths, "--model", str(model_dir), "-o", str(out)])
    assert rc == 2
    assert message in capsys.readouterr().err
    if case == "exists":
        assert out.read_text() == "earlier results\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--seed", str(2**64)], "seed must be an integer from 0 to 2**63 - 1"),
     (["--seed", "-1"], "seed must be"), (["-n", "1"], "n_samples"),
     (["-q", "0.5", "1.5"], "quantiles"), (["--batch-size", "0"], "batch_size"),
     (["--snr", "high"], "--snr"), (["--snr", "-5"], "--snr")],
)
def test_predict_arguments_are_checked_before_any_work(linear_gaussian_model, model_dir, tmp_path,
                                                       capsys, no_work, extra, message):
    prob, _ = linear_gaussian_model
    paths = _write_spectra(prob, tmp_path, n=1)
    rc = cli.main(["predict", *paths, "--model", str(model_dir), "-o", str(tmp_path / "r.ecsv"),
                   *extra])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.ecsv").exists()


def test_predict_rejects_a_file_without_wavelength_solution(model_dir, tmp_path, capsys):
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.ones(6000))
    hdu.header["BUNIT"] = "erg / (s cm2 Angstrom)"
    hdu.writeto(tmp_path / "raw.fits")
    rc = cli.main(["predict", str(tmp_path / "raw.fits"), "--model", str(model_dir), "-o",
                   str(tmp_path / "r.ecsv"), "--format", "wcs1d-fits", "--snr", "50"])
    # a survey run records the refusal in the file's row instead of stopping
    assert rc == 0
    assert "1 without a result" in capsys.readouterr().err
    t = QTable.read(tmp_path / "r.ecsv")
    assert len(t) == 1 and "no wavelength solution" in t["status"][0]


def test_demo_does_not_overwrite_without_overwrite(tmp_path, capsys, no_work):
    out = tmp_path / "demo.ecsv"
    out.write_text("keep me\n")
    assert cli.main(["demo", "-n", "50", "-o", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"
    assert cli.main(["demo", "--seed", str(2**64)]) == 2
    assert "seed must be" in capsys.readouterr().err


def test_demo_overwrites_when_asked(tmp_path):
    out = tmp_path / "demo.ecsv"
    out.write_text("old\n")
    assert cli.main(["demo", "-n", "50", "-o", str(out), "--overwrite", "--device", "cpu"]) == 0
    assert len(QTable.read(out)) == 1


def test_calibrate_options_and_defaults():
    parser = cli.build_parser()
    args = parser.parse_args(["calibrate", "posterior", "model", "--version", "1.0.1",
                              "-o", "out", "--json", "report.json"])
    assert (args.seed, args.n_samples, args.vsini_per_star, args.realizations) == (11, 500, 4, 2)
    args = parser.parse_args(["calibrate", "fit-flag", "model", "emulator", "--version", "1.0.1",
                              "-o", "out", "--json", "report.json", "--max-fraction", "0.05"])
    assert (args.seed, args.n_samples, args.vsini_per_star) == (1, 256, 2)
    assert args.max_fraction == 0.05 and args.example is None
    assert args.floor_teff_nodes is None  # one floor unless nodes are given
    args = parser.parse_args(["calibrate", "fit-flag", "model", "emulator", "--version", "1.0.1",
                              "-o", "out", "--json", "r.json", "--floor-teff-nodes", "4000",
                              "5000", "6500"])
    assert args.floor_teff_nodes == [4000.0, 5000.0, 6500.0]
    with pytest.raises(SystemExit) as info:  # the version of the model written is required
        parser.parse_args(["calibrate", "posterior", "model", "-o", "out", "--json", "r.json"])
    assert info.value.code == 2


def test_calibrate_takes_a_folder_of_shards(tmp_path, model_dir, capsys):
    """--grid may name a v2 shard folder: read by heldout_from_grid, which checks the model."""
    from specutils_cinn.instruments import fourmost_setup
    from specutils_cinn.synthesis.shards import write_shard

    npix = fourmost_setup("hr").grid.npix
    labels = {k: [0.0] * 10 for k in ("teff", "logg", "fe_h")}
    write_shard(tmp_path / "v2" / "shard_00000.h5", star_id=list(range(10)), labels=labels,
                spectra={"hr": np.ones((10, npix))}, info=[{}] * 10, provenance={})
    for action in ("posterior", "fit-flag"):
        with pytest.raises(SystemExit):
            cli.main(["calibrate", action, "-h"])
        assert "folder of v2 grid shards" in " ".join(capsys.readouterr().out.split())
    rc = cli.main(["calibrate", "posterior", str(model_dir), "--grid", str(tmp_path / "v2"),
                   "--version", "9.0.0", "-o", str(tmp_path / "out"),
                   "--json", str(tmp_path / "r.json")])
    assert rc == 2
    # the linear-Gaussian test model's grid (one segment "A") is no 4MOST setup's
    assert "not segments of one 4MOST setup" in capsys.readouterr().err


def test_calibrate_refuses_to_write_into_a_model(tmp_path, model_dir, capsys):
    # checked before any work: an existing model directory is never overwritten
    rc = cli.main(["calibrate", "posterior", str(model_dir), "--version", "9.0.0",
                   "-o", str(model_dir), "--json", str(tmp_path / "r.json")])
    assert rc == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_emulator_options_and_defaults():
    parser = cli.build_parser()
    args = parser.parse_args(["emulator", "holdout"])
    assert (args.stars, args.seed, args.setups, args.out_dir) == (
        "holdout", 2027, ["hr", "lr"], "work")
    args = parser.parse_args(["emulator", "prepare", "--shards", "grid/x", "--setup", "hr",
                              "-o", "x.npz"])
    assert args.grid is None and args.step is None and args.threads == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["emulator", "prepare", "--grid", "g.h5", "--shards", "s",
                           "--setup", "hr", "-o", "x.npz"])
    assert cli.main(["emulator", "error", "c.toml", "-o", "x.npz", "--threads", "0"]) == 2
