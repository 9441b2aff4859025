"""The command line explains itself: cheap to import, help for every command and option,
progress lines in logs, documented exit codes."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.table import QTable

from specutils_cinn import cli

COMMANDS = [
    ["predict"], ["models"], ["models", "list"], ["models", "info"], ["models", "download"],
    ["demo"], ["train"], ["grid"], ["synthesis"], ["synthesis", "build"], ["synthesis", "info"],
    ["emulator"], ["emulator", "prepare"], ["emulator", "train"], ["emulator", "error"],
    ["emulator", "holdout"], ["calibrate"], ["calibrate", "fit-flag"], ["calibrate", "posterior"],
]


def _run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=None).stdout


def test_importing_the_cli_imports_neither_torch_nor_specutils():
    # python -X importtime: torch and specutils (which pulls in matplotlib through ndcube) each
    # take seconds; --help must not wait for them
    out = _run_python(
        "import sys, specutils_cinn.cli; "
        "print(sorted(m for m in ('torch', 'specutils', 'astropy.table', 'numpy') "
        "if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_help_runs_without_torch():
    out = _run_python(
        "import sys, contextlib, io\n"
        "from specutils_cinn import cli\n"
        "for argv in (['--help'], ['predict', '--help'], ['models', 'info', '--help'],\n"
        "             ['emulator', 'train', '--help'], ['calibrate', 'fit-flag', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            cli.main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print('torch' in sys.modules, 'specutils' in sys.modules)"
    )
    assert out.strip() == "False False"


@pytest.mark.slow  # two fresh interpreters importing astropy, specutils and torch (about 5 s)
def test_import_specutils_cinn_still_registers_the_readers():
    # the readers are registered when specutils is imported, before or after specutils_cinn
    for first, second in (("specutils_cinn", "specutils"), ("specutils", "specutils_cinn")):
        out = _run_python(
            f"import {first}, {second}\n"
            "from astropy.io import registry\n"
            "from specutils import Spectrum\n"
            "print(sorted(str(f) for f in registry.get_formats(Spectrum)['Format'] "
            "if f in ('4MOST-L1', '4MOST-MEC', 'ESO-SDP')))"
        )
        assert out.strip() == "['4MOST-L1', '4MOST-MEC', 'ESO-SDP']", (first, second)


def test_lazy_names_of_the_package():
    import specutils_cinn

    assert "CINNParameterEstimator" in dir(specutils_cinn)
    assert specutils_cinn.QualityFlag.POOR_FIT == 64
    assert specutils_cinn.io.FORMATS[0] == "4MOST-L1"
    with pytest.raises(AttributeError):
        specutils_cinn.no_such_name  # noqa: B018


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_each_command_has_its_own_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: specutils-cinn {' '.join(argv)} ")
    assert "exit status:" in out and "130" in out


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_option_has_help_and_default():
    parser = cli.build_parser()
    for p in _parsers(parser):
        formatter = p._get_formatter()
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                                   argparse._SubParsersAction)):
                continue
            where = f"{p.prog} {action.option_strings or action.dest}"
            assert action.help, where
            shown = formatter._get_help_string(action)
            if action.option_strings and action.default not in (None, False):
                assert "(default: " in shown, where
            if action.option_strings and action.default is None and not action.required:
                # None must be explained: what happens without the option
                assert "default" in shown, where


def test_predict_help_states_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("posterior draws per spectrum (default: 1000)", "(default: 0.16 0.5 0.84)",
                 "(default: auto)", "replace an existing output file",
                 "seed of the posterior draws", "(default: 256)"):
        assert text in out, text


def test_exit_codes_are_documented_in_the_docs():
    docs = (Path(__file__).parents[1] / "docs" / "cli.rst").read_text()
    for code in cli.EXIT_CODES:
        assert f"``{code}``" in docs


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["predict"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main(["models", "info"])  # names are required
    assert info.value.code == 2


def test_models_without_action_lists(capsys):
    assert cli.main(["models"]) == 0
    assert "4most-hr-lte" in capsys.readouterr().out


def test_predict_logs_one_progress_line_per_chunk(tmp_path, capsys):
    example = Path(cli.__file__).parents[1] / "data" / cli.EXAMPLE_SPECTRUM
    files = []
    for i in range(3):
        files.append(tmp_path / f"sun{i}.fits")
        files[-1].write_bytes(example.read_bytes())
    out = tmp_path / "sun.fits"
    rc = cli.main(["predict", *map(str, files), "-o", str(out), "-n", "50", "--seed", "1",
                   "--chunk-size", "2", "--device", "cpu", "--format", "tabular-fits"])
    assert rc == 0
    err = capsys.readouterr().err  # not a terminal under pytest
    lines = [line for line in err.splitlines() if ": chunk " in line]
    assert [line.split("chunk ")[1].split(" ")[0] for line in lines] == ["1/2", "2/2"]
    assert "wrote 3 rows" in err
    t = QTable.read(out)
    assert len(t) == 3 and str(t["logg"].unit) == "dex(cm / s2)"


def test_predict_no_progress(tmp_path, capsys):
    example = Path(cli.__file__).parents[1] / "data" / cli.EXAMPLE_SPECTRUM
    assert cli.main(["predict", str(example), "-o", str(tmp_path / "s.ecsv"), "-n", "20",
                     "--device", "cpu", "--format", "tabular-fits", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "spectra (" not in err and "wrote 1 rows" in err
