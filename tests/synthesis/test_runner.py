import json
from types import SimpleNamespace

import numpy as np
import pytest

from specutils_cinn.synthesis.grid_file import read_grid
from specutils_cinn.synthesis.runner import GridConfig, SynthesisWindow, run_grid


def fake_synthesize(labels, windows, prefix, line_lists, timeout):
    """A stand-in for Turbospectrum: one Gaussian line whose depth follows [Fe/H]."""
    if labels["teff"] > 6900:
        raise RuntimeError("too hot for the fake")
    waves, fluxes = [], []
    for start, stop, step in windows:
        w = np.arange(start, stop + step / 2, step)
        center = 0.5 * (start + stop)
        depth = 0.5 + 0.1 * labels["fe_h"]
        waves.append(w)
        fluxes.append(1 - depth * np.exp(-0.5 * ((w - center) / 0.2) ** 2))
    atm = SimpleNamespace(nodes=("a.mod", "b.mod"), spherical=labels["logg"] < 3.25,
                          interpolated=True, filled=False)
    return SimpleNamespace(wavelength=waves, flux=fluxes, atmosphere=atm, code_version="fake",
                           line_lists=["a.ts"], solar_scale={"Fe": 7.45})


def _config(tmp_path, n=16, processes=1):
    doc = {
        "grid": {"output": "out/grid.h5", "n_stars": n, "processes": processes},
        "design": {"seed": 2, "ranges": {"fe_h": [-1.0, 0.0]}},
        "window": [{"name": "a", "start": 5000.0, "stop": 5002.0, "step": 0.05},
                   {"name": "b", "start": 6000.0, "stop": 6001.0, "step": 0.1}],
        "synthesis": {"line_lists": "ges"},
    }
    return GridConfig.from_dict(doc, base=tmp_path)


def test_run_resume_and_consolidate(tmp_path):
    cfg = _config(tmp_path)
    s1 = run_grid(cfg, limit=5, progress=False, synthesize_fn=fake_synthesize)
    assert s1.done + s1.failed == 5 and s1.skipped == 0
    s2 = run_grid(cfg, progress=False, synthesize_fn=fake_synthesize)
    assert s2.skipped == 5 and s2.done + s2.failed == 11
    g = read_grid(cfg.output)
    failed = sorted(cfg.parts_dir.glob("*.failed.json"))
    assert len(g) + len(failed) == 16 and len(g) == s1.done + s2.done
    # rows are sorted by star id and flux matches the labels that made it
    assert np.all(np.diff(g.star_id) > 0)
    w, f = g.segments["a"]
    assert f.shape == (len(g), w.size) and w.size == 41
    np.testing.assert_allclose(f.min(axis=1), 1 - (0.5 + 0.1 * g.labels["fe_h"]), atol=1e-6)
    assert g.labels["fe_h"].min() >= -1.0 and g.labels["fe_h"].max() <= 0.0
    assert g.meta["provenance"]["code"] == "fake"
    assert g.meta["provenance"]["n_failed"] == len(failed)
    assert g.atmosphere["spherical"].dtype == bool
    assert g.cpu_seconds.shape == (len(g),) and np.all(g.cpu_seconds >= 0)
    for p in failed:
        assert "too hot" in json.loads(p.read_text())["error"]
    s3 = run_grid(cfg, progress=False, synthesize_fn=fake_synthesize)
    assert s3.done == 0 and s3.skipped == 16


def test_parallel_matches_serial(tmp_path):
    serial = _config(tmp_path / "s", n=8, processes=1)
    parallel = _config(tmp_path / "p", n=8, processes=2)
    run_grid(serial, progress=False, synthesize_fn=fake_synthesize)
    run_grid(parallel, progress=False, synthesize_fn=fake_synthesize)
    a, b = read_grid(serial.output), read_grid(parallel.output)
    np.testing.assert_array_equal(a.star_id, b.star_id)
    np.testing.assert_array_equal(a.segments["b"][1], b.segments["b"][1])


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown section"):
        GridConfig.from_dict({"grid": {"output": "x.h5", "n_stars": 2}, "windows": []})
    with pytest.raises(ValueError, match="window"):
        GridConfig.from_dict({"grid": {"output": "x.h5", "n_stars": 2}})
    with pytest.raises(ValueError, match="line_lists"):
        GridConfig(output=tmp_path / "x.h5", n_stars=1,
                   windows=(SynthesisWindow("a", 1.0, 2.0, 0.1),), line_lists="vald")
    with pytest.raises(ValueError, match="stop > start"):
        SynthesisWindow("a", 2.0, 1.0, 0.1)


def test_cli_grid_consolidate_only(tmp_path, capsys):
    from specutils_cinn.cli import main

    cfg = tmp_path / "grid.toml"
    cfg.write_text('[grid]\noutput = "g.h5"\nn_stars = 4\n'
                   '[[window]]\nname = "a"\nstart = 5000.0\nstop = 5001.0\nstep = 0.1\n')
    assert main(["grid", str(cfg), "--consolidate-only"]) == 0
    assert "no finished star yet" in capsys.readouterr().out
    run_grid(GridConfig.from_toml(cfg), progress=False, synthesize_fn=fake_synthesize,
             consolidate=False)
    assert not (tmp_path / "g.h5").exists()
    assert main(["grid", str(cfg), "--consolidate-only"]) == 0
    assert len(read_grid(tmp_path / "g.h5")) == 4
