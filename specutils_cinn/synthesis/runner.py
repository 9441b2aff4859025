"""Resumable, parallel synthesis of a grid of stars (``specutils-cinn grid CONFIG``).

Each star is synthesized by its own worker process (one per core by default) and written
atomically to its own part file in ``<output>.parts/`` as soon as it is done; a restart skips the
stars whose part file exists (failed stars are retried only with ``retry_failed``). When the run
ends, or with ``consolidate_only``, the parts are collected into one HDF5 grid file
(`~specutils_cinn.synthesis.grid_file.write_grid`), so killing a run never loses finished stars.

A run is described by a TOML file::

    [grid]
    output = "work/grid-lte-v1.h5"   # relative paths are relative to the TOML file
    n_stars = 1024
    processes = 2                      # default: number of CPU cores
    timeout = 900                      # seconds per star

    [design]                           # see specutils_cinn.synthesis.design.LabelDesign
    seed = 1
    teff_range = [4000, 7000]
    alpha_trend = false
    [design.ranges]                    # optional: overrides of DEFAULT_RANGES
    fe_h = [-2.5, 0.5]

    [[window]]                         # air Angstrom; synthesized at `step`
    name = "hr_blue"
    start = 3920.0
    stop = 4361.0
    step = 0.02

    [synthesis]
    prefix = ""                        # Turbospectrum install; default: find_synthesis()
    line_lists = "extended"            # "extended" (default) or "ges" (Gaia-ESO + H only)
    exclude_line_lists = ["sih"]       # families of the extended lists to leave out

This module is longer than the package's usual ~600 lines because the run's TOML schema, the
worker processes, resumption and the shard bookkeeping are one resumable job and share its
configuration; about a quarter of it is documentation.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .design import KielRegion, LabelDesign
from .grid_file import SynthesisGrid, holdout_mask, write_grid
from .sampling import doppler_windows, join_pieces, padded_pieces

__all__ = ["GridConfig", "GridRunSummary", "SynthesisWindow", "consolidate_grid",
           "pack_shards", "run_grid", "synthesize_star"]


@dataclass(frozen=True)
class SynthesisWindow:
    """One wavelength window of the synthesis (air Angstrom).

    Parameters
    ----------
    name : str
        Segment name in the grid file, e.g. ``"hr_blue"``.
    start, stop, step : float
        Range and sampling in Angstrom.
    """

    name: str
    start: float
    stop: float
    step: float

    def __post_init__(self) -> None:
        if not (self.step > 0 and self.stop > self.start):
            raise ValueError(f"window {self.name!r}: need stop > start and step > 0")

    @property
    def wavelength(self) -> np.ndarray:
        """The wavelengths Turbospectrum samples, ``arange(start, stop + step/2, step)``."""
        return np.arange(self.start, self.stop + self.step / 2, self.step)


@dataclass(frozen=True)
class GridConfig:
    """What a grid run synthesizes and where it writes.

    Parameters
    ----------
    output : `pathlib.Path`
        HDF5 grid file to write; the per-star parts go to ``<output>.parts/``.
    n_stars : int
        Number of stars (the first ``n_stars`` points of ``design``).
    windows : sequence of `SynthesisWindow`
        Wavelength windows.
    design : `~specutils_cinn.synthesis.design.LabelDesign`
        The label design.
    processes : int, optional
        Worker processes (default: the number of CPU cores).
    timeout : float
        Seconds allowed per star.
    prefix : `pathlib.Path`, optional
        Turbospectrum install (default: `~specutils_cinn.synthesis.install.find_synthesis`).
    line_lists : {"extended", "ges"}
        ``"extended"``: the Gaia-ESO list plus the converted linemake atoms and molecules;
        ``"ges"``: the Gaia-ESO list and hydrogen only.
    exclude_line_lists : tuple of str
        Families of the extended lists to leave out (e.g. ``("sih",)``); see
        `~specutils_cinn.synthesis.linelists.FAMILIES`.
    shards : `pathlib.Path`, optional
        Folder of committed shards (`~specutils_cinn.synthesis.shards`). When given, each star
        is stored at the 4MOST ``setups``' native sampling after the line-spread function, and
        finished blocks of ``shard_size`` stars are written there as shards; stars already in
        a shard are never synthesized again (a run resumes on a machine that has only the
        repository).
    shard_size : int
        Stars per shard (a block of consecutive ``star_id``).
    setups : tuple of {"hr", "lr"}
        4MOST setups stored in the shards.
    hydrogen_wing_fraction : float
        See `~specutils_cinn.synthesis.turbospectrum.synthesize` (0: Turbospectrum as is).
    min_depth : float, optional
        Per-star line pruning below this predicted central depth
        (`~specutils_cinn.synthesis.pruning.LinePruning`); None: no pruning.
    lithium : {"1d-lte", "3d-nlte"}
        ``"3d-nlte"``: Li 6104/6708/8126 from breidablik where it covers the star
        (`~specutils_cinn.synthesis.lithium.synthesize_with_lithium`), 1D LTE elsewhere.
    loggf_calibration : `pathlib.Path`, optional
        A solar log gf calibration (ECSV) applied to the line lists it covers
        (`~specutils_cinn.synthesis.loggf.calibrated_line_lists`).
    sampling_fraction : float, optional
        Sample each star as finely as its narrowest lines need: windows are cut into pieces
        whose step is this fraction of the Doppler width of an iron line at 0.7 Teff with
        the star's microturbulence (`~specutils_cinn.synthesis.sampling.doppler_windows`); the
        windows' own ``step`` is then an upper limit. None: the windows' steps.
    piece_overlap : float
        Angstrom by which each piece is synthesized into its neighbors and then trimmed
        (`~specutils_cinn.synthesis.sampling.padded_pieces`), so that lines just beyond a
        piece's end keep their wings. 0: none.
    """

    output: Path
    n_stars: int
    windows: tuple[SynthesisWindow, ...]
    design: LabelDesign = field(default_factory=LabelDesign)
    processes: int | None = None
    timeout: float = 900.0
    prefix: Path | None = None
    line_lists: str = "extended"
    exclude_line_lists: tuple[str, ...] = ()
    shards: Path | None = None
    shard_size: int = 16
    setups: tuple[str, ...] = ("hr", "lr")
    hydrogen_wing_fraction: float = 0.0
    min_depth: float | None = None
    lithium: str = "1d-lte"
    loggf_calibration: Path | None = None
    sampling_fraction: float | None = None
    piece_overlap: float = 0.0

    def __post_init__(self) -> None:
        if self.lithium not in ("1d-lte", "3d-nlte"):
            raise ValueError(f"lithium must be '1d-lte' or '3d-nlte', got {self.lithium!r}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {self.shard_size}")
        if any(s not in ("hr", "lr") for s in self.setups) or not self.setups:
            raise ValueError(f"setups must be a non-empty list of 'hr'/'lr', got {self.setups}")
        if self.sampling_fraction is not None and not 0 < self.sampling_fraction <= 2:
            raise ValueError(f"sampling_fraction must be in (0, 2], got {self.sampling_fraction}")
        if not 0 <= self.piece_overlap <= 50:
            raise ValueError(f"piece_overlap must be in [0, 50] A, got {self.piece_overlap}")
        if self.n_stars < 1:
            raise ValueError(f"n_stars must be at least 1, got {self.n_stars}")
        if not self.windows:
            raise ValueError("a grid needs at least one [[window]]")
        names = [w.name for w in self.windows]
        if len(set(names)) != len(names):
            raise ValueError(f"window names must be unique, got {names}")
        if self.line_lists not in ("extended", "ges"):
            raise ValueError(f"line_lists must be 'extended' or 'ges', got {self.line_lists!r}")

    @property
    def parts_dir(self) -> Path:
        """Directory of the per-star part files."""
        return self.output.with_name(self.output.name + ".parts")

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> GridConfig:
        """Read a grid configuration from a TOML file (see the module docstring).

        Parameters
        ----------
        path : path-like
            The TOML file. Relative paths inside it are relative to its directory.

        Returns
        -------
        `GridConfig`
        """
        path = Path(path)
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
        return cls.from_dict(doc, base=path.parent)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], base: Path = Path(".")) -> GridConfig:
        """Build a configuration from the parsed TOML document (see `from_toml`)."""
        known = {"grid", "design", "window", "synthesis"}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown section(s) {sorted(unknown)} in grid config; "
                             f"expected {sorted(known)}")
        g = dict(doc.get("grid", {}))
        if "output" not in g or "n_stars" not in g:
            raise ValueError("grid config needs [grid] output and n_stars")
        d = dict(doc.get("design", {}))
        region_kw = {}
        if "teff_range" in d:
            region_kw["teff_range"] = tuple(float(x) for x in d.pop("teff_range"))
        for key in ("logg_lower", "logg_upper"):
            if key in d:
                region_kw[key.split("_")[1]] = tuple(tuple(map(float, k)) for k in d.pop(key))
        design_kw: dict[str, Any] = {"region": KielRegion(**region_kw)}
        if "ranges" in d:
            from .design import DEFAULT_RANGES

            ranges = dict(DEFAULT_RANGES)
            ranges.update({k: (float(v[0]), float(v[1])) for k, v in d.pop("ranges").items()})
            design_kw["ranges"] = ranges
        for key in ("seed", "alpha_trend"):
            if key in d:
                design_kw[key] = d.pop(key)
        if d:
            raise ValueError(f"unknown [design] key(s) {sorted(d)}")
        windows = tuple(
            SynthesisWindow(str(w["name"]), float(w["start"]), float(w["stop"]), float(w["step"]))
            for w in doc.get("window", []))
        s = dict(doc.get("synthesis", {}))
        prefix = s.get("prefix") or None
        out = Path(g["output"])
        return cls(
            output=out if out.is_absolute() else base / out,
            n_stars=int(g["n_stars"]),
            windows=windows,
            design=LabelDesign(**design_kw),
            processes=g.get("processes"),
            timeout=float(g.get("timeout", 900.0)),
            prefix=None if prefix is None else (base / prefix if not Path(prefix).is_absolute()
                                                else Path(prefix)),
            line_lists=str(s.get("line_lists", "extended")),
            exclude_line_lists=tuple(str(x) for x in s.get("exclude_line_lists", ())),
            shards=_path(g.get("shards"), base),
            shard_size=int(g.get("shard_size", 16)),
            setups=tuple(str(x) for x in g.get("setups", ("hr", "lr"))),
            hydrogen_wing_fraction=float(s.get("hydrogen_wing_fraction", 0.0)),
            min_depth=None if s.get("min_depth") is None else float(s["min_depth"]),
            lithium=str(s.get("lithium", "1d-lte")),
            loggf_calibration=_path(s.get("loggf_calibration"), base),
            sampling_fraction=(None if s.get("sampling_fraction") is None
                               else float(s["sampling_fraction"])),
            piece_overlap=float(s.get("piece_overlap", 0.0)),
        )

    def to_dict(self) -> dict:
        """JSON-serializable description (stored as grid provenance)."""
        out = {
            "n_stars": self.n_stars,
            "windows": [[w.name, w.start, w.stop, w.step] for w in self.windows],
            "design": self.design.to_dict(),
            "line_lists": self.line_lists,
            "exclude_line_lists": list(self.exclude_line_lists),
        }
        if self.shards is not None:
            out.update({
                "shard_size": self.shard_size, "setups": list(self.setups),
                "hydrogen_wing_fraction": self.hydrogen_wing_fraction,
                "min_depth": self.min_depth, "lithium": self.lithium,
                "loggf_calibration": (None if self.loggf_calibration is None
                                      else self.loggf_calibration.name),
                "sampling_fraction": self.sampling_fraction,
            })
            if self.piece_overlap:
                out["piece_overlap"] = self.piece_overlap
        return out


def _path(value: Any, base: Path) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(str(value))
    return p if p.is_absolute() else base / p


@dataclass
class GridRunSummary:
    """What a call of `run_grid` did.

    Attributes
    ----------
    done, failed, skipped : int
        Stars synthesized now, stars that failed now, stars skipped because their part file
        already existed.
    seconds : float
        Wall time of the call.
    output : `pathlib.Path` or None
        The consolidated grid file (None if not consolidated).
    """

    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    output: Path | None = None


def _part_path(parts: Path, star_id: int) -> Path:
    return parts / f"star_{star_id:06d}.npz"


def _fail_path(parts: Path, star_id: int) -> Path:
    return parts / f"star_{star_id:06d}.failed.json"


def _default_synthesize(labels: Mapping[str, float], windows: Sequence[tuple[float, float, float]],
                        prefix: Path | None, line_lists: str | tuple, timeout: float) -> Any:
    from .install import find_synthesis
    from .turbospectrum import synthesize

    install = find_synthesis(prefix)
    if line_lists != "ges" and not install.extended_linelists:
        raise RuntimeError(f"the synthesis install at {install.prefix} has no extended line lists; "
                           "rebuild it (specutils-cinn synthesis build --force) or use "
                           "line_lists = \"ges\"")
    lists = [install.ges_linelist, install.hlinedata]
    if line_lists != "ges":
        exclude = set(line_lists[1]) if isinstance(line_lists, tuple) else set()
        unknown = exclude - set(install.extended_linelists)
        if unknown:
            raise ValueError(f"exclude_line_lists names unknown families {sorted(unknown)}; the "
                             f"install has {sorted(install.extended_linelists)}")
        lists += [p for fam, p in install.extended_linelists.items() if fam not in exclude]
    return synthesize(labels, windows, install=install, line_lists=lists, timeout=timeout)


def _physics(families: Any) -> str:
    """The grid's physics line, naming the atmosphere families its stars used."""
    used = set() if families is None else {str(f) for f in families}
    if "atlas9" not in used:
        return "1D LTE, MARCS model atmospheres"
    return ("1D LTE, MARCS x3 model atmospheres ([Fe/H] >= -2.5) and Castelli-Kurucz ATLAS9 "
            "ODFNEW [alpha/M] = +0.4 ([Fe/H] < -2.5)")


def _atmosphere_fields(atm: Any) -> dict[str, Any]:
    if atm is None:
        return {}
    out: dict[str, Any] = {}
    for key in ("source", "family", "alpha_m", "spherical", "interpolated", "filled",
                "extrapolated"):
        if hasattr(atm, key):
            out[key] = getattr(atm, key)
    for key in ("nodes", "widened"):
        if hasattr(atm, key):
            out[key] = " ".join(str(x) for x in getattr(atm, key))
    return out


def _write_part(parts: Path, star_id: int, arrays: dict[str, Any],
                info: Mapping[str, Any]) -> tuple[int, bool, str]:
    """Write a finished star's part file atomically and clear an earlier failure record."""
    arrays = {**arrays, "info": np.asarray(json.dumps(info, default=_json_default))}
    tmp = parts / f".tmp_{star_id:06d}_{os.getpid()}.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, _part_path(parts, star_id))
    _fail_path(parts, star_id).unlink(missing_ok=True)
    return star_id, True, ""


def _record_failure(parts: Path, star_id: int, labels: Mapping[str, float],
                    exc: BaseException) -> tuple[int, bool, str]:
    """Write a failed star's record (error and traceback); the run goes on."""
    msg = f"{type(exc).__name__}: {exc}"
    _fail_path(parts, star_id).write_text(json.dumps(
        {"star_id": star_id, "labels": dict(labels), "error": msg,
         "traceback": traceback.format_exc()}, default=_json_default, indent=1))
    return star_id, False, msg


def _synthesize_star(task: tuple) -> tuple[int, bool, str]:
    """Worker: synthesize one star and write its part file. Returns (star_id, ok, message)."""
    star_id, labels, windows, parts, prefix, line_lists, timeout, fn = task
    parts = Path(parts)
    t0 = time.perf_counter()
    c0 = _child_cpu()
    try:
        synth = fn or _default_synthesize
        res = synth(labels, [(w[1], w[2], w[3]) for w in windows], prefix, line_lists, timeout)
        arrays: dict[str, Any] = {}
        for (name, *_), wave, flux in zip(windows, res.wavelength, res.flux, strict=True):
            arrays[f"wave_{name}"] = np.asarray(wave, dtype=np.float64)
            arrays[f"flux_{name}"] = np.asarray(flux, dtype=np.float32)
            if not np.all(np.isfinite(arrays[f"flux_{name}"])):
                raise RuntimeError(f"non-finite flux in window {name}")
        info = {
            "star_id": star_id,
            "labels": dict(labels),
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": _child_cpu() - c0,
            "atmosphere": _atmosphere_fields(getattr(res, "atmosphere", None)),
            "code_version": getattr(res, "code_version", "unknown"),
            "line_lists": [str(p) for p in getattr(res, "line_lists", [])],
            "solar_scale": getattr(res, "solar_scale", {}),
        }
        return _write_part(parts, star_id, arrays, info)
    except Exception as exc:  # noqa: BLE001 - recorded per star, the run goes on
        return _record_failure(parts, star_id, labels, exc)


_LISTS_CACHE: dict[tuple, list[Path]] = {}


def _v2_line_lists(install: Any, options: Mapping[str, Any], parts: Path) -> list[Path]:
    """The line lists of a v2 run (calibrated copies made once per process)."""
    key = (str(install.prefix), options["line_lists"], tuple(options["exclude"]),
           options["loggf_calibration"])
    if key in _LISTS_CACHE:
        return _LISTS_CACHE[key]
    if options["line_lists"] == "ges":
        lists = [install.ges_linelist, install.hlinedata]
    elif options["loggf_calibration"]:
        from .loggf import calibrated_line_lists

        lists = calibrated_line_lists(install, options["loggf_calibration"],
                                      parts / "linelists", exclude=tuple(options["exclude"]))
    else:
        lists = [install.ges_linelist, install.hlinedata] + [
            p for f, p in install.extended_linelists.items() if f not in options["exclude"]]
    _LISTS_CACHE[key] = [Path(p) for p in lists]
    return _LISTS_CACHE[key]


def _turbospectrum_v2(labels: Mapping[str, float], pieces: list, options: Mapping[str, Any],
                      parts: Path) -> tuple[Any, dict, Any]:
    """Turbospectrum with the v2 options; returns the result, the Li record and the install."""
    from .install import find_synthesis
    from .pruning import LinePruning
    from .turbospectrum import synthesize

    install = find_synthesis(options["prefix"])
    kwargs = {"install": install, "line_lists": _v2_line_lists(install, options, parts),
              "timeout": options["timeout"],
              "hydrogen_wing_fraction": options["hydrogen_wing_fraction"] or None,
              "line_pruning": (None if options["min_depth"] is None
                               else LinePruning(min_depth=options["min_depth"]))}
    if options["lithium"] == "3d-nlte":
        from .lithium import synthesize_with_lithium

        res, li_info = synthesize_with_lithium(labels, pieces, **kwargs)
        return res, li_info, install
    return synthesize(labels, pieces, **kwargs), {"li_physics": "1D LTE"}, install


def _star_pieces(labels: Mapping[str, float], windows: Sequence[tuple],
                 options: Mapping[str, Any]) -> tuple[list[tuple], list[tuple]]:
    """The ``(start, stop, step)`` pieces one star is stored in, and those synthesized."""
    fraction = options["sampling_fraction"]
    pieces: list[tuple[float, float, float]] = []
    padded: list[tuple[float, float, float]] = []
    for _, start, stop, step in windows:
        if fraction:
            own = doppler_windows(labels, start, stop, step, fraction)
        else:
            own = [(start, stop, step)]
        pieces += own
        padded += padded_pieces(own, options.get("piece_overlap", 0.0), (start, stop))
    return pieces, padded


def _raw_star(star_id: int, labels: Mapping[str, float], windows: Sequence[tuple],
              options: Mapping[str, Any], workdir: Path, fn: Callable | None = None
              ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One star with a sharded run's physics: wavelength, normalized flux and its record."""
    t0 = time.perf_counter()
    c0 = _child_cpu()
    pieces, padded = _star_pieces(labels, windows, options)
    install = None
    li_info: dict[str, Any] = {"li_physics": "1D LTE"}
    if fn is not None:
        res = fn(labels, padded, options)
    else:
        res, li_info, install = _turbospectrum_v2(labels, padded, options, workdir)
    wave, flux = join_pieces(pieces, res.wavelength, res.flux)
    if not np.all(np.isfinite(flux)):
        raise RuntimeError("non-finite synthetic flux")
    info = {
        "star_id": star_id,
        "labels": dict(labels),
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": _child_cpu() - c0,
        "atmosphere": _atmosphere_fields(getattr(res, "atmosphere", None)),
        "lithium": li_info,
        "li_physics": li_info.get("li_physics", "1D LTE"),
        "pruning": getattr(res, "pruning", {}),
        "sampling": [list(p) for p in pieces],
        "piece_overlap": options.get("piece_overlap", 0.0),
        "code_version": getattr(res, "code_version", "unknown"),
        "patches": list(getattr(install, "patches", ()) if install is not None else ()),
        "line_lists": [str(p) for p in getattr(res, "line_lists", [])],
        "solar_scale": getattr(res, "solar_scale", {}),
    }
    return wave, flux, info


def _run_options(config: GridConfig) -> dict[str, Any]:
    """What a worker of a sharded run needs of the configuration (picklable)."""
    return {"prefix": config.prefix, "line_lists": config.line_lists,
            "exclude": list(config.exclude_line_lists),
            "loggf_calibration": (None if config.loggf_calibration is None
                                  else str(config.loggf_calibration)),
            "hydrogen_wing_fraction": config.hydrogen_wing_fraction,
            "min_depth": config.min_depth, "lithium": config.lithium,
            "sampling_fraction": config.sampling_fraction,
            "piece_overlap": config.piece_overlap,
            "setups": list(config.setups), "timeout": config.timeout}


def synthesize_star(config: GridConfig, labels: Mapping[str, float],
                    workdir: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Synthesize one star with exactly the physics and sampling of a sharded grid run.

    The run stores `~specutils_cinn.synthesis.shards.instrument_spectra` of this spectrum;
    use it for stars outside the design (e.g. the Sun, to compare the grid's physics with an
    observation).

    Parameters
    ----------
    config : `GridConfig`
        A sharded configuration (``config.shards`` set): windows, per-star sampling, line
        lists and their log gf calibration, pruning, hydrogen and lithium options.
    labels : mapping of str to float
        The star's labels, as `~specutils_cinn.synthesis.design.LabelDesign` draws them
        (``teff``, ``logg``, ``fe_h``, ``vmic``, abundance ratios, ``a_li``).
    workdir : path-like
        Folder for the calibrated line lists (made once per process).

    Returns
    -------
    wavelength, flux : numpy.ndarray
        Air Angstrom and continuum-normalized flux, before any broadening or instrument.
    info : dict
        The star's record as a shard keeps it (``cpu_seconds``, ``sampling``, atmosphere,
        lithium physics, pruning, code version and patches, line lists).

    Raises
    ------
    ValueError
        If ``config`` is not a sharded configuration.
    """
    if config.shards is None:
        raise ValueError("synthesize_star needs a sharded configuration ([grid] shards)")
    windows = [(w.name, w.start, w.stop, w.step) for w in config.windows]
    return _raw_star(-1, labels, windows, _run_options(config), Path(workdir))


def _synthesize_star_v2(task: tuple) -> tuple[int, bool, str]:
    """Worker of a sharded run: synthesize one star, keep it at the 4MOST setups' sampling."""
    star_id, labels, windows, parts, options, fn = task
    parts = Path(parts)
    try:
        from .shards import instrument_spectra

        wave, flux, info = _raw_star(star_id, labels, windows, options, parts, fn)
        spectra = instrument_spectra(wave, flux, options["setups"])
        arrays = {f"spec_{k}": v.astype(np.float32) for k, v in spectra.items()}
        return _write_part(parts, star_id, arrays, info)
    except Exception as exc:  # noqa: BLE001 - recorded per star, the run goes on
        return _record_failure(parts, star_id, labels, exc)


def _shard_physics(infos: Sequence[Mapping[str, Any]], lithium: str) -> str:
    """The physics line of a shard: atmosphere families used and the lithium treatment."""
    atm = _physics([i.get("atmosphere", {}).get("family", "marcs") for i in infos])
    if lithium == "3d-nlte":
        return f"{atm}; 3D NLTE Li (breidablik) where it covers the star, 1D LTE Li elsewhere"
    return atm


def pack_shards(config: GridConfig) -> list[Path]:
    """Write the shards whose block of stars is finished (each star done or failed).

    Parameters
    ----------
    config : `GridConfig`
        A sharded run (``config.shards`` set).

    Returns
    -------
    list of `pathlib.Path`
        The shards written by this call.
    """
    from .shards import shard_name, write_shard

    if config.shards is None:
        raise ValueError("pack_shards needs a configuration with [grid] shards")
    parts = config.parts_dir
    written = []
    size = config.shard_size
    for block in range((config.n_stars + size - 1) // size):
        dest = config.shards / shard_name(block)
        if dest.exists():
            continue
        ids = range(block * size, min((block + 1) * size, config.n_stars))
        status = {i: _part_path(parts, i).exists() or
                  (_fail_path(parts, i).exists() and "fail") for i in ids}
        if not all(status.values()):
            continue
        done = [i for i in ids if _part_path(parts, i).exists()]
        infos, spectra = [], {s: [] for s in config.setups}
        for i in done:
            with np.load(_part_path(parts, i), allow_pickle=False) as data:
                infos.append(json.loads(str(data["info"])))
                for s in config.setups:
                    spectra[s].append(data[f"spec_{s}"])
        failed = [{"star_id": i, "error": json.loads(_fail_path(parts, i).read_text())["error"]}
                  for i in ids if i not in done]
        names = list(infos[0]["labels"]) if infos else []
        n_pix = {}
        if not infos:
            from .shards import _setup

            n_pix = {s: _setup(s).grid.npix for s in config.setups}
        prov = {**config.to_dict(),
                "code": infos[0]["code_version"] if infos else "",
                "patches": infos[0].get("patches", []) if infos else [],
                "line_lists": infos[0]["line_lists"] if infos else [],
                "solar_scale": infos[0]["solar_scale"] if infos else {},
                "physics": _shard_physics(infos, config.lithium)}
        write_shard(dest, star_id=done,
                    labels={k: [i["labels"][k] for i in infos] for k in names},
                    spectra={s: (np.stack(v) if v else np.zeros((0, n_pix[s])))
                             for s, v in spectra.items()},
                    info=[{k: v for k, v in i.items()
                           if k not in ("labels", "line_lists", "solar_scale")}
                          for i in infos],
                    provenance=prov, failed=failed)
        written.append(dest)
    return written


def _child_cpu() -> float:
    """CPU seconds used so far by this process's finished children (the Turbospectrum runs)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def run_grid(
    config: GridConfig,
    *,
    limit: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    consolidate: bool = True,
    synthesize_fn: Callable[..., Any] | None = None,
) -> GridRunSummary:
    """Synthesize the stars of a grid configuration that are not done yet.

    Parameters
    ----------
    config : `GridConfig`
        What to synthesize.
    limit : int, optional
        Synthesize at most this many new stars in this call (the rest is left for a restart).
    retry_failed : bool
        Also retry stars that failed in an earlier run (default: skip them).
    progress : bool
        Show a progress bar (tqdm) on stderr.
    consolidate : bool
        Write the HDF5 grid file from all finished parts at the end.
    synthesize_fn : callable, optional
        Replaces the Turbospectrum driver (for tests): called as
        ``fn(labels, windows, prefix, line_lists, timeout)`` (``fn(labels, windows, options)``
        for a sharded run) and returning an object with ``wavelength`` and ``flux`` lists (one
        array per window). Must be picklable.

    Returns
    -------
    `GridRunSummary`
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    parts = config.parts_dir
    parts.mkdir(parents=True, exist_ok=True)
    (parts / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    labels = config.design.draw(config.n_stars)
    names = [k for k in labels if k != "star_id"]
    windows = [(w.name, w.start, w.stop, w.step) for w in config.windows]
    summary = GridRunSummary()
    in_shards: set[int] = set()
    if config.shards is not None:
        from .shards import shard_star_ids

        if config.shards.is_dir():
            done, failed = shard_star_ids(config.shards)
            in_shards = done | failed
        options = _run_options(config)
    todo = []
    for i, sid in enumerate(labels["star_id"]):
        sid = int(sid)
        if sid in in_shards or _part_path(parts, sid).exists() or (
                _fail_path(parts, sid).exists() and not retry_failed):
            summary.skipped += 1
            continue
        star = {k: float(labels[k][i]) for k in names}
        if config.shards is not None:
            todo.append((sid, star, windows, str(parts), options, synthesize_fn))
            continue
        todo.append((sid, star, windows, str(parts), config.prefix,
                     config.line_lists if config.line_lists == "ges"
                     else ("extended", config.exclude_line_lists),
                     config.timeout, synthesize_fn))
    if limit is not None:
        todo = todo[: max(int(limit), 0)]
    nproc = max(1, int(config.processes or os.cpu_count() or 1))
    worker = _synthesize_star if config.shards is None else _synthesize_star_v2
    if config.shards is not None:
        pack_shards(config)   # blocks finished by an earlier, interrupted run
    bar = tqdm(total=len(todo), disable=not progress, unit="star", desc="synthesis")

    def _done(sid: int, ok: bool, msg: str) -> None:
        summary.done += ok
        summary.failed += not ok
        if not ok:
            bar.write(f"star {sid} failed: {msg}")
        bar.update()
        if config.shards is not None:
            for path in pack_shards(config):
                bar.write(f"wrote {path}")

    try:
        if nproc == 1 or len(todo) <= 1:
            for t in todo:
                _done(*worker(t))
        else:
            with ProcessPoolExecutor(max_workers=nproc) as pool:
                futures = [pool.submit(worker, t) for t in todo]
                for fut in as_completed(futures):
                    _done(*fut.result())
    finally:
        bar.close()
    if config.shards is not None:
        pack_shards(config)
    elif consolidate:
        summary.output = consolidate_grid(config)
    summary.seconds = time.perf_counter() - t0
    return summary


def consolidate_grid(config: GridConfig) -> Path | None:
    """Collect the finished part files of a run into its HDF5 grid file.

    Parameters
    ----------
    config : `GridConfig`
        The run.

    Returns
    -------
    `pathlib.Path` or None
        The grid file, or None if no star is finished yet.
    """
    parts = sorted(config.parts_dir.glob("star_*.npz"))
    if not parts:
        return None
    infos, fluxes = [], {w.name: [] for w in config.windows}
    waves: dict[str, np.ndarray] = {}
    for p in parts:
        with np.load(p, allow_pickle=False) as data:
            infos.append(json.loads(str(data["info"])))
            for w in config.windows:
                fluxes[w.name].append(data[f"flux_{w.name}"])
                waves.setdefault(w.name, data[f"wave_{w.name}"])
    star_id = np.asarray([i["star_id"] for i in infos], dtype=np.int64)
    label_names = list(infos[0]["labels"])
    labels = {k: np.asarray([i["labels"][k] for i in infos]) for k in label_names}
    atm_keys = sorted({k for i in infos for k in i["atmosphere"]})
    atmosphere = {k: np.asarray([i["atmosphere"].get(k, "") for i in infos]) for k in atm_keys}
    for k, v in atmosphere.items():
        if all(isinstance(x, bool | np.bool_) for x in v):
            atmosphere[k] = v.astype(bool)
    grid = SynthesisGrid(
        labels=labels,
        star_id=star_id,
        segments={k: (waves[k], np.stack(v)) for k, v in fluxes.items()},
        holdout=holdout_mask(star_id),
        atmosphere=atmosphere,
        seconds=np.asarray([i["seconds"] for i in infos]),
        cpu_seconds=np.asarray([i.get("cpu_seconds", np.nan) for i in infos]),
    )
    prov = {
        **config.to_dict(),
        "code": infos[0]["code_version"],
        "line_lists": infos[0]["line_lists"],
        "solar_scale": infos[0]["solar_scale"],
        "physics": _physics(atmosphere.get("family")),
        "n_failed": len(list(config.parts_dir.glob("star_*.failed.json"))),
    }
    return write_grid(config.output, grid, provenance=prov, overwrite=True)
