"""Survey runs (specutils_cinn.survey.run_survey): streaming in chunks, status column, resume,
Dask, radial velocities."""

import json
import os
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable, Table
from fourmost_files import write_hrs_arms
from specutils import Spectrum

import specutils_cinn.survey.chunk as survey_chunk
import specutils_cinn.survey.run as survey_run
from specutils_cinn import cli, survey
from specutils_cinn.inputs import doppler_factor
from specutils_cinn.io.lookalike import cname
from specutils_cinn.survey import parts_folder, plan_inputs, run_survey

N_SAMPLES = 64
#: What every survey test runs with (small and quick).
FAST = {"n_samples": N_SAMPLES, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def est():
    """The bundled HR model, as the survey runs load it (once per process)."""
    return survey.cached_estimator(None, "cpu")


@pytest.fixture(scope="module")
def hrs_dir(tmp_path_factory):
    """Five objects as separate HRS arm files, and an unreadable file sorted among them."""
    folder = tmp_path_factory.mktemp("hrs")
    for i in range(5):
        write_hrs_arms(folder, cname(20.0 + 60 * i, -30.0), ob=100 + i, seed=i,
                       extra_noise=0.01)
    (folder / f"qmost_{cname(90.0, -30.0)}_20260101_7_HG1.fits").write_text("not FITS")
    return folder


def _sun() -> Spectrum:
    path = resources.files("specutils_cinn") / "data" / "sun_4most_hr_example.fits"
    with resources.as_file(path) as p:
        return Spectrum.read(p, format="tabular-fits")


def _shifted(sun: Spectrum, v_kms: float, header: dict | None = None) -> Spectrum:
    h = fits.Header(header or {})
    return Spectrum(flux=sun.flux, spectral_axis=sun.spectral_axis * doppler_factor(v_kms * u.km
                    / u.s), uncertainty=sun.uncertainty, mask=sun.mask, meta={"header": h})


@pytest.fixture(scope="module")
def sun_files(tmp_path_factory):
    """The bundled Sun at 0 and +100 km/s (header VRAD holds the velocity), tabular FITS."""
    folder = tmp_path_factory.mktemp("sun")
    sun = _sun()
    paths = []
    for name, v in (("sun0.fits", 0.0), ("sun100.fits", 100.0)):
        p = folder / name
        _shifted(sun, v, {"VRAD": v}).write(p, format="tabular-fits")
        paths.append(p)
    return paths


def _objects(folder: Path) -> list[str]:
    return sorted({p.name.split("_")[1] for p in folder.glob("qmost_*_HR1.fits")})


# ----------------------------------------------------------------------------- before any work
@pytest.mark.parametrize("name, exc, match", [
    ("out.txt", ValueError, "suffix"),
    ("missing/out.fits", FileNotFoundError, "does not exist"),
    ("exists.ecsv", FileExistsError, "overwrite"),
])
def test_output_checked_before_any_work(tmp_path, monkeypatch, hrs_dir, name, exc, match):
    (tmp_path / "exists.ecsv").write_text("x")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(survey_run, "cached_estimator", no_model)
    monkeypatch.setattr(survey_run, "plan_inputs", no_model)
    with pytest.raises(exc, match=match):
        run_survey([hrs_dir], tmp_path / name, **FAST)
    assert not parts_folder(tmp_path / name).exists()


def test_cli_rejects_output_suffix_without_work(tmp_path, hrs_dir, capsys):
    assert cli.main(["predict", str(hrs_dir), "-o", str(tmp_path / "out.txt")]) == 2
    err = capsys.readouterr().err
    assert ".ecsv" in err and ".fits" in err and ".parquet" in err


# ----------------------------------------------------------------------------- streaming
def test_group_arms_rows_in_input_order_with_status(est, hrs_dir, tmp_path):
    out = tmp_path / "res.ecsv"
    summary = run_survey([hrs_dir], out, chunk_size=2, group_arms=True, seed=5, **FAST)
    t = QTable.read(out)
    assert summary.rows == len(t) == 6 and summary.chunks == 3 and summary.errors == 1
    assert not parts_folder(out).exists()
    objects = [s.split("/")[-1].split("_")[1] for s in t["source"]]
    assert objects == sorted(objects)  # input (name) order, the bad file in its place
    bad = np.flatnonzero(t["status"] != "ok")
    assert len(bad) == 1 and t["source"][bad[0]].endswith("_HG1.fits")
    assert t["status"][bad[0]].startswith("error: ")
    assert np.isnan(t["teff"][bad[0]].value) and t["flags"][bad[0]] == 5
    ok = t[t["status"] == "ok"]
    assert all(s.count(";") == 2 for s in ok["source"])  # three arms joined
    assert all(f.endswith("_HR1.fits") for f in ok["filename"])
    assert np.all(np.abs(ok["teff"].value - 5772) < 250) and np.all(ok["flags"] == 0)
    assert t.meta["SEED"] == 5 and t.meta["CHUNKSZ"] == 2 and t.meta["NSAMPLES"] == N_SAMPLES
    assert np.all(ok["rv"] == 0 * u.km / u.s) and np.all(np.isnan(ok["rv_err"]))
    # a row is what predict gives for that object alone with the job's seed
    from specutils_cinn.io import read_spectra

    first = t["source"][0].split(";")
    alone = est.predict(read_spectra(first), n_samples=N_SAMPLES, seed=5, progress=False)
    np.testing.assert_allclose(alone["teff"].value, t["teff"][:1].value, rtol=1e-6)


@pytest.mark.slow  # four survey runs, and pyarrow (the CLI test writes FITS in the fast set)
@pytest.mark.parametrize("suffix", [".fits", ".parquet"])
def test_formats_hold_the_same_rows(est, hrs_dir, tmp_path, suffix):
    if suffix == ".parquet":
        pq = pytest.importorskip("pyarrow.parquet")
    ref = tmp_path / "ref.ecsv"
    run_survey([hrs_dir], ref, chunk_size=2, group_arms=True, seed=5, **FAST)
    out = tmp_path / f"res{suffix}"
    run_survey([hrs_dir], out, chunk_size=2, group_arms=True, seed=5, **FAST)
    a = QTable.read(ref)
    if suffix == ".parquet":
        raw = pq.read_table(out)
        assert raw.num_rows == len(a)
        assert raw.column("source").to_pylist() == list(a["source"])
        assert raw.column("status").to_pylist() == list(a["status"])
        np.testing.assert_array_equal(raw.column("teff").to_numpy(), a["teff"].value)
        assert b"table_meta_yaml" in raw.schema.metadata
        return
    b = QTable.read(out)
    assert b.colnames == a.colnames and len(b) == len(a)
    assert list(b["source"]) == list(a["source"]) and list(b["status"]) == list(a["status"])
    for name in ("teff", "logg", "fe_h", "flags", "snr", "rv"):
        np.testing.assert_array_equal(np.asarray(b[name]), np.asarray(a[name]))
    assert b["logg"].unit == a["logg"].unit and b.meta["SEED"] == 5


def test_file_list_table_and_text(est, hrs_dir, tmp_path):
    files = sorted(p.name for p in hrs_dir.glob("qmost_*_HR1.fits"))[:2]
    (hrs_dir / "list.txt").write_text("# two objects, red arm only\n" + "\n".join(files) + "\n")
    units = plan_inputs([hrs_dir / "list.txt"])
    assert [Path(un.paths[0]).name for un in units] == files
    Table({"path": files, "rv": [1.5, -2.0] * u.m / u.s}).write(hrs_dir / "list.ecsv",
                                                                 overwrite=True)
    units = plan_inputs(hrs_dir / "list.ecsv", rv_column="rv")
    assert [un.rv for un in units] == pytest.approx([1.5e-3, -2.0e-3])
    assert all(Path(un.paths[0]).parent == hrs_dir for un in units)
    with pytest.raises(ValueError, match="no column"):
        plan_inputs(Table({"x": [1]}))


# ----------------------------------------------------------------------------- resume
@pytest.mark.slow  # a killed subprocess, then two more runs (about 10 s)
def test_kill_and_resume_gives_one_row_per_input(est, hrs_dir, tmp_path):
    """A run killed (SIGKILL) after its second chunk resumes; the rows equal an
    uninterrupted run's, none lost or duplicated."""
    out = tmp_path / "res.fits"
    script = textwrap.dedent(f"""
        import os, signal
        from specutils_cinn.survey import run_survey

        def progress(done, total):
            if done == 2:
                os.kill(os.getpid(), signal.SIGKILL)

        run_survey([{str(hrs_dir)!r}], {str(out)!r}, chunk_size=1, group_arms=True, seed=11,
                   n_samples={N_SAMPLES}, device="cpu", progress=progress)
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr
    folder = parts_folder(out)
    assert not out.exists()
    assert sorted(p.name for p in folder.glob("part-*.fits")) == [
        "part-0000000.fits", "part-0000001.fits"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["chunks"] == 6 and manifest["seed"] == 11
    summary = run_survey([hrs_dir], out, chunk_size=1, group_arms=True, seed=11, **FAST)
    assert summary.resumed == 2 and summary.rows == 6 and not folder.exists()
    ref = tmp_path / "ref.fits"
    run_survey([hrs_dir], ref, chunk_size=1, group_arms=True, seed=11, **FAST)
    a, b = QTable.read(out), QTable.read(ref)
    assert list(a["source"]) == list(b["source"]) and len(set(a["source"])) == 6
    np.testing.assert_array_equal(a["teff"].value, b["teff"].value)


def test_crash_resume_and_other_job(est, hrs_dir, tmp_path, monkeypatch):
    out = tmp_path / "res.ecsv"
    real = survey_run._process_chunk

    def crash_on_third(est, units, job, index=0):
        if index == 2:
            raise RuntimeError("injected failure")
        return real(est, units, job, index)

    monkeypatch.setattr(survey_run, "_process_chunk", crash_on_third)
    with pytest.raises(RuntimeError, match="injected"):
        run_survey([hrs_dir], out, chunk_size=2, group_arms=True, **FAST)  # no seed given
    monkeypatch.setattr(survey_run, "_process_chunk", real)
    folder = parts_folder(out)
    assert len(list(folder.glob("part-*.ecsv"))) == 2 and not out.exists()
    seed = json.loads((folder / "manifest.json").read_text())["seed"]
    with pytest.raises(ValueError, match="another job.*n_samples"):
        run_survey([hrs_dir], out, chunk_size=2, group_arms=True, n_samples=32,
                   device="cpu", progress=False)
    summary = run_survey([hrs_dir], out, chunk_size=2, group_arms=True, **FAST)
    t = QTable.read(out)
    assert summary.resumed == 2 and summary.seed == seed == t.meta["SEED"]
    assert len(t) == 6 and len(set(t["source"])) == 6
    # an existing output is refused, and --restart discards parts of another job
    with pytest.raises(FileExistsError):
        run_survey([hrs_dir], out, chunk_size=2, group_arms=True, **FAST)
    out2 = tmp_path / "res2.ecsv"
    parts_folder(out2).mkdir()
    (parts_folder(out2) / "manifest.json").write_text(json.dumps(
        {"version": 1, "fingerprint": {"inputs": 1, "settings": {}}, "seed": 1}))
    with pytest.raises(ValueError, match="another job"):
        run_survey([hrs_dir], out2, chunk_size=2, group_arms=True, **FAST)
    summary = run_survey([hrs_dir], out2, chunk_size=2, group_arms=True, resume=False, **FAST)
    assert summary.resumed == 0 and summary.rows == 6


# ----------------------------------------------------------------------------- Dask
@pytest.mark.slow  # imports distributed and starts a cluster (seconds)
def test_dask_local_cluster_matches_local_run(est, hrs_dir, tmp_path):
    distributed = pytest.importorskip("distributed")
    ref = tmp_path / "ref.ecsv"
    run_survey([hrs_dir], ref, chunk_size=2, group_arms=True, seed=9, **FAST)
    out = tmp_path / "dask.ecsv"
    # threads in this process (tcp on 127.0.0.1: no look-up of a public address)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       protocol="tcp", host="127.0.0.1", dashboard_address=None)
    before = dict(survey_chunk._ESTIMATORS)
    with cluster, distributed.Client(cluster) as client:
        summary = run_survey([hrs_dir], out, chunk_size=2, group_arms=True, seed=9,
                             dask=client, **FAST)
        # the workers used the process's one estimator: no model loaded again
        ids = client.run(lambda: id(survey.cached_estimator(None, "cpu")))
        assert set(ids.values()) == {id(est)}
    assert survey_chunk._ESTIMATORS == before
    assert summary.rows == 6
    a, b = QTable.read(out), QTable.read(ref)
    assert list(a["source"]) == list(b["source"]) and list(a["status"]) == list(b["status"])
    np.testing.assert_array_equal(a["teff"].value, b["teff"].value)


def test_compile_sampling_option(est, hrs_dir, tmp_path, monkeypatch):
    """compile_sampling (CLI --compile) loads a compiled estimator once per process and gives
    the same rows (a stand-in compiler here; the real one is tested in tests/flows)."""
    import specutils_cinn.flows.cinn as cinn_module

    calls = []
    monkeypatch.setattr(cinn_module.torch, "compile",
                        lambda fn, **kw: (lambda *a: calls.append(1) or fn(*a)))
    monkeypatch.setattr(survey_chunk, "_ESTIMATORS", dict(survey_chunk._ESTIMATORS))
    ref = tmp_path / "ref.ecsv"
    run_survey([hrs_dir], ref, chunk_size=2, group_arms=True, seed=9, **FAST)
    out = tmp_path / "compiled.ecsv"
    assert cli.main(["predict", str(hrs_dir), "-o", str(out), "--group-arms", "--seed", "9",
                     "--chunk-size", "2", "--compile", "--no-progress", "--device", "cpu",
                     "-n", str(FAST["n_samples"])]) == 0
    compiled = survey.cached_estimator(None, "cpu", compile_sampling=True)
    assert calls and compiled.sampling_compiled and compiled is not est
    assert not est.sampling_compiled
    a, b = QTable.read(out), QTable.read(ref)
    assert list(a["status"]) == list(b["status"])
    np.testing.assert_array_equal(a["teff"].value, b["teff"].value)


def test_precision_option(est, hrs_dir, tmp_path, monkeypatch):
    """--precision bfloat16 (run_survey sampling_precision) draws with the subnets' hidden
    layers in bfloat16: the same latent draws, quantiles moved by a small fraction of the
    posterior width, and the table says which precision it used."""
    monkeypatch.setattr(survey_chunk, "_ESTIMATORS", dict(survey_chunk._ESTIMATORS))
    ref = tmp_path / "ref.ecsv"
    run_survey([hrs_dir], ref, chunk_size=2, group_arms=True, seed=9,
               sampling_precision="float32", **FAST)
    out = tmp_path / "bf16.ecsv"
    assert cli.main(["predict", str(hrs_dir), "-o", str(out), "--group-arms", "--seed", "9",
                     "--chunk-size", "2", "--precision", "bfloat16", "--no-progress",
                     "--device", "cpu", "-n", str(FAST["n_samples"])]) == 0
    a, b = QTable.read(out), QTable.read(ref)
    assert a.meta["PRECISN"] == "bfloat16" and b.meta["PRECISN"] == "float32"
    assert survey.cached_estimator(None, "cpu", sampling_precision="bfloat16") \
        .sampling_precision == "bfloat16"
    assert list(a["status"]) == list(b["status"])
    ok = np.asarray(b["status"]) == "ok"
    width = (b["teff_p84"] - b["teff_p16"]).value[ok] / 2
    shift = np.abs((a["teff"] - b["teff"]).value[ok])
    assert ok.sum() >= 4 and np.all(shift < 0.1 * width) and np.any(shift > 0)


# ----------------------------------------------------------------------------- radial velocity
def test_predict_with_estimated_rv_matches_unshifted(est, sun_files, tmp_path):
    common = {"reader_format": "tabular-fits", "seed": 4, **FAST}
    out = tmp_path / "rv.ecsv"
    run_survey(sun_files, out, radial_velocity="estimate", **common)
    t = QTable.read(out)
    assert list(t["status"]) == ["ok", "ok"]
    np.testing.assert_allclose(t["rv"].to_value(u.km / u.s), [0.0, 100.0], atol=2.0)
    assert np.all(np.isfinite(t["rv_err"])) and t.meta["RVSRC"] == "estimate"
    # the shifted Sun, brought to rest by the estimate, gives the unshifted Sun's Teff
    # (the same spectrum, a velocity difference of ~0.1 km/s; MC noise of 64 draws ~10 K)
    assert abs(t["teff"][1] - t["teff"][0]) < 40 * u.K
    # without a radial velocity it does not (the issue: 6507 K)
    plain = tmp_path / "plain.ecsv"
    run_survey(sun_files, plain, **common)
    p = QTable.read(plain)
    assert abs(p["teff"][1] - p["teff"][0]) > 200 * u.K
    # the velocity from the header keyword, and from a column of an input table
    hdr = tmp_path / "hdr.ecsv"
    run_survey(sun_files, hdr, radial_velocity="header:VRAD", **common)
    h = QTable.read(hdr)
    assert list(h["rv"].to_value(u.km / u.s)) == [0.0, 100.0]
    assert abs(h["teff"][1] - h["teff"][0]) < 40 * u.K
    Table({"path": [str(p) for p in sun_files], "v": [0.0, 100.0]}).write(
        tmp_path / "in.ecsv")
    col = tmp_path / "col.ecsv"
    run_survey(tmp_path / "in.ecsv", col, radial_velocity="column:v", **common)
    np.testing.assert_array_equal(QTable.read(col)["teff"], h["teff"])
    # a missing keyword is that input's error, not the run's
    miss = tmp_path / "miss.ecsv"
    run_survey(sun_files, miss, radial_velocity="header:NOPE", **common)
    m = QTable.read(miss)
    assert all("NOPE" in s for s in m["status"])


def test_cli_predict_survey_options(est, hrs_dir, tmp_path, capsys):
    out = tmp_path / "cli.fits"
    rc = cli.main(["predict", str(hrs_dir), "--group-arms", "-o", str(out), "--chunk-size", "4",
                   "-n", str(N_SAMPLES), "--seed", "1", "--device", "cpu",
                   "--radial-velocity", "estimate", "--keep-parts"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "wrote 6 rows" in err and "1 without a result" in err
    t = QTable.read(out)
    ok = t[t["status"] == "ok"]
    assert np.all(np.abs(ok["rv"].to_value(u.km / u.s)) < 2) and len(t) == 6
    assert parts_folder(out).is_dir()
    # the same command again: the output exists
    assert cli.main(["predict", str(hrs_dir), "--group-arms", "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
