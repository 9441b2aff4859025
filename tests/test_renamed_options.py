"""Command-line options of the scripts renamed to American spelling
(scripts/renamed_options.py): the new names work without a warning, the old ones, hidden from
``--help``, for this release with an `~astropy.utils.exceptions.AstropyDeprecationWarning`."""

from __future__ import annotations

import argparse

import pytest
from astropy.utils.exceptions import AstropyDeprecationWarning
from repo_scripts import script_module

#: script -> (new option, old option, value on the command line (None: a flag), destination,
#: its parsed value, its default)
RENAMED = {
    "benchmark_stars_ts": ("--synthesize-only", "--synthesise-only", None, "synthesize_only",
                           True, False),
    "calibrate_mismatch": ("--realizations", "--realisations", "3", "realizations", 3, 4),
    "real_stars": ("--realizations", "--realisations", "3", "realizations", 3, 5),
    "make_4most_files": ("--fibers", "--fibres", "3", "fibers", 3, None),
}


class _Parsed(Exception):
    """Raised with the parsed arguments instead of running the script."""


def _parse(module, argv, monkeypatch):
    parse = argparse.ArgumentParser.parse_args

    def stop(self, *args, **kwargs):
        raise _Parsed(parse(self, *args, **kwargs))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    with pytest.raises(_Parsed) as info:
        module.main(argv)
    return info.value.args[0]


@pytest.mark.parametrize("name", sorted(RENAMED))
def test_renamed_option_new_old_and_default(name, monkeypatch, capsys):
    new, old, value, dest, parsed, default = RENAMED[name]
    extra = ["OUTDIR"] if name == "make_4most_files" else []
    given = [] if value is None else [value]
    with script_module(name) as module:
        assert getattr(_parse(module, extra, monkeypatch), dest) == default
        assert getattr(_parse(module, extra + [new, *given], monkeypatch), dest) == parsed
        with pytest.warns(AstropyDeprecationWarning, match=f"{old} is deprecated.*use {new}"):
            args = _parse(module, extra + [old, *given], monkeypatch)
        assert getattr(args, dest) == parsed
        assert not hasattr(args, dest.replace("iz", "is").replace("fiber", "fibre"))
        monkeypatch.undo()
        with pytest.raises(SystemExit):
            module.main(["--help"])
    out = capsys.readouterr().out
    assert new in out and old not in out


def test_renamed_option_refuses_other_actions():
    with script_module("renamed_options") as module:
        ap = argparse.ArgumentParser()
        with pytest.raises(ValueError, match="unsupported action"):
            module.add_renamed_option(ap, "--colors", "--colours", action="append")
