"""The emulator's data: synthesis grids degraded to a 4MOST grid, and held-out test sets.

`prepare_training_data` (``specutils-cinn emulator prepare``) reads a synthesis grid (HDF5
written by ``specutils-cinn grid``, read with `specutils_cinn.synthesis.read_grid`, or the seed
grid ``ts_lte_seed.npz``), convolves every star with the 4MOST line-spread function and bins
it onto the instrument's pixels with `specutils_cinn.instruments.degrade` (no rotation, no
macroturbulence, no noise, no renormalization: the emulator learns the continuum-normalized
flux after the LSF), and writes the data file that
`specutils_cinn.emulator.pipeline.load_training_data` reads. Each 4MOST segment is cut to what
the synthesis covers, inset by five LSF sigmas plus a pixel (`restrict_setup`), so that the
LSF never reaches beyond the synthetic spectrum; pixel centers stay on the 4MOST grid's phase.

A v2 grid (committed shards, `specutils_cinn.synthesis.shards`) is already at every 4MOST
setup's native sampling after the LSF: with ``shards`` its spectra are taken as they are (no
second convolution); the default step is then the native one (HR 0.05 A, LR 0.25 A), and a
coarser ``step`` averages whole native pixels.

`prepare_holdout_sets` (``specutils-cinn emulator holdout``) makes the held-out Turbospectrum
test sets of the cINN models trained on emulated spectra.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._hashing import sha256_file
from ..instruments import InstrumentSetup, degrade, fourmost_setup
from ..parameters import EMULATOR_LABELS
from ..wavelength_grid import GridSegment, WavelengthGrid, crop_grid
from .io import load_emulator
from .pipeline import load_training_data, read_emulator_config, validation_rows
from .training import EmulatorConfig

__all__ = [
    "DEFAULT_STEP",
    "HOLDOUT_CROP",
    "SYNTHESIS_SEGMENTS",
    "emulator_validation_rows",
    "load_synthesis",
    "prepare_holdout_sets",
    "prepare_training_data",
    "restrict_setup",
    "write_training_data",
]

#: Synthesis segments feeding each setup; a grid with none of them but a ``full`` segment
#: (configs/grid-4most-lte-v1.toml) uses that one.
SYNTHESIS_SEGMENTS = {"hr": ("hr_blue", "hr_green", "hr_red"), "lr": ("lr",)}
#: Default pixel step (Angstrom) of the emulator grid made from a synthesis grid.
DEFAULT_STEP = {"hr": 0.1, "lr": 0.5}
#: How the model grids of ``configs/4most-{hr,lr}-lte.toml`` crop the emulator grids.
HOLDOUT_CROP = {"hr": {"segments": ["HG", "HR"]}, "lr": {"wavelength_range": [4400.0, 9200.0]}}
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def load_synthesis(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray,
                                              dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Read a synthesis grid: HDF5 (``specutils-cinn grid``) or the seed grid's ``.npz``.

    Parameters
    ----------
    path : str or pathlib.Path
        The grid file.

    Returns
    -------
    labels : dict of str to numpy.ndarray
    star_id : numpy.ndarray
    holdout : numpy.ndarray
        Boolean; for the seed grid ``star_id % 10 == 9``.
    segments : dict of str to (numpy.ndarray, numpy.ndarray)
        ``{name: (wave, flux [n_star, n_pix])}`` at synthesis resolution.
    meta : dict
        Provenance of the grid.
    """
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as d:
            labels = {k[6:]: d[k].astype(np.float64) for k in d.files if k.startswith("label_")}
            star_id = d["star_id"].astype(np.int64)
            segs = {}
            for name in ("hr_blue", "hr_green", "hr_red", "lr"):
                start, stop, step = d[f"grid_{name}"]
                wave = start + step * np.arange(int(round((stop - start) / step)) + 1)
                segs[name] = (wave, d[name])
        meta = {"source": "seed grid npz (see its README)"}
        return labels, star_id, star_id % 10 == 9, segs, meta
    from ..synthesis.grid_file import read_grid

    g = read_grid(path)
    return ({k: np.asarray(v, np.float64) for k, v in g.labels.items()},
            np.asarray(g.star_id, np.int64), np.asarray(g.holdout, bool), dict(g.segments),
            dict(g.meta))


def restrict_setup(setup: InstrumentSetup, coverage: Sequence[tuple[float, float]],
                   n_sigma: float = 5.0) -> InstrumentSetup:
    """Cut each segment of ``setup`` to the synthesis coverage, inset by the LSF reach.

    Parameters
    ----------
    setup : `~specutils_cinn.instruments.InstrumentSetup`
        The full instrument setup.
    coverage : list of (float, float)
        Wavelength ranges (Angstrom) covered by the synthesis.
    n_sigma : float
        Inset in LSF sigmas (plus one pixel) from each end of the covered range.

    Returns
    -------
    `~specutils_cinn.instruments.InstrumentSetup`
        Same name and resolving powers; segments not covered at all are dropped.

    Raises
    ------
    ValueError
        If the synthesis covers no segment of the setup.
    """
    segs, rp = [], {}
    for s in setup.grid.segments:
        r = setup.resolving_power[s.name]
        for lo, hi in coverage:
            if hi <= s.start or lo >= s.stop:
                continue

            def reach(w: float, r=r, step=s.step) -> float:
                rv = float(r(np.array([w]))[0]) if callable(r) else float(r)
                return n_sigma * w / rv / _FWHM_PER_SIGMA + step

            first = max(s.start, lo + reach(lo))
            last = min(s.stop, hi - reach(hi))
            k0 = math.ceil((first - s.start) / s.step - 1e-9)
            k1 = math.floor((last - s.start) / s.step + 1e-9)
            if k1 <= k0:
                continue
            segs.append(GridSegment(s.name, round(s.start + k0 * s.step, 9),
                                    round(s.start + k1 * s.step, 9), s.step))
            rp[s.name] = r
            break
    if not segs:
        raise ValueError(f"the synthesis covers no segment of {setup.name}")
    return InstrumentSetup(setup.name, WavelengthGrid(tuple(segs), setup.grid.medium), rp)


def write_training_data(path: str | Path, labels: Mapping[str, np.ndarray], flux: np.ndarray,
                        star_id: np.ndarray, holdout: np.ndarray, setup: InstrumentSetup,
                        provenance: Mapping[str, Any]) -> Path:
    """Write an emulator data file (the layout of `~specutils_cinn.emulator.pipeline`).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.npz`` to write (its folder is created).
    labels : dict of str to numpy.ndarray
        At least the `~specutils_cinn.parameters.EMULATOR_LABELS`, one value per star.
    flux : numpy.ndarray
        ``[n_star, npix]`` on ``setup``'s grid.
    star_id, holdout : numpy.ndarray
        Star of each row and whether it is held out.
    setup : `~specutils_cinn.instruments.InstrumentSetup`
        The grid and resolving power of ``flux``.
    provenance : dict
        Where the data came from (stored as JSON).

    Returns
    -------
    pathlib.Path
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, labels=np.column_stack([labels[k] for k in EMULATOR_LABELS]),
             label_names=np.array(EMULATOR_LABELS), flux=flux, star_id=star_id, holdout=holdout,
             setup=np.array(json.dumps(setup.to_dict())),
             provenance=np.array(json.dumps(dict(provenance), default=str)))
    return out


def prepare_training_data(
    output: str | Path,
    setup: str,
    *,
    grid: str | Path | None = None,
    shards: str | Path | None = None,
    step: float | None = None,
    chunk: int = 32,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Degrade a synthesis grid to a 4MOST grid and write the emulator's training data.

    Parameters
    ----------
    output : str or pathlib.Path
        The ``.npz`` to write.
    setup : {"hr", "lr"}
        The 4MOST setup.
    grid : str or pathlib.Path, optional
        A synthesis grid at synthesis resolution (``.h5`` or the seed grid's ``.npz``).
    shards : str or pathlib.Path, optional
        A folder of v2 grid shards, already at 4MOST sampling (give exactly one of ``grid``
        and ``shards``).
    step : float, optional
        Pixel step in Angstrom (default: `DEFAULT_STEP` for a grid, the native step for
        shards, where it must be a whole multiple of the native step).
    chunk : int, optional
        Stars per `~specutils_cinn.instruments.degrade` call.
    log : callable, optional
        Called with progress messages.

    Returns
    -------
    dict
        ``path``, ``n_stars``, ``n_holdout``, ``setup`` (the
        `~specutils_cinn.instruments.InstrumentSetup` written).

    Raises
    ------
    ValueError
        If the source lacks labels or segments, the step does not fit, or the spectra are not
        finite.
    """
    if (grid is None) == (shards is None):
        raise ValueError("give exactly one of grid and shards")
    if setup not in SYNTHESIS_SEGMENTS:
        raise ValueError(f"setup must be one of {sorted(SYNTHESIS_SEGMENTS)}, got {setup!r}")
    if shards is not None:
        labels, flux, star_id, holdout, inst, provenance = _from_shards(shards, setup, step)
    else:
        labels, flux, star_id, holdout, inst, provenance = _from_grid(grid, setup, step, chunk,
                                                                      log)
    out = write_training_data(output, labels, flux, star_id, holdout, inst, provenance)
    return {"path": out, "n_stars": int(star_id.size), "n_holdout": int(np.sum(holdout)),
            "setup": inst}


def _from_grid(path: str | Path, setup: str, step: float | None, chunk: int,
               log: Callable[[str], Any]) -> tuple:
    """Degrade a synthesis-resolution grid to the 4MOST setup."""
    src = Path(path)
    labels, star_id, holdout, segs, meta = load_synthesis(src)
    missing = [k for k in EMULATOR_LABELS if k not in labels]
    if missing:
        raise ValueError(f"{src}: missing labels {missing}")
    names = [n for n in SYNTHESIS_SEGMENTS[setup] if n in segs]
    if not names and "full" in segs:  # one window over the whole LR range (grid v1 layout)
        names = ["full"]
    if not names:
        raise ValueError(f"{src}: no synthesis segment among {SYNTHESIS_SEGMENTS[setup]}")
    full = fourmost_setup(setup, step=step or DEFAULT_STEP[setup])
    inst = restrict_setup(full, [(float(segs[n][0][0]), float(segs[n][0][-1])) for n in names])
    wave = np.concatenate([segs[n][0] for n in names])
    order = np.argsort(wave, kind="stable")
    if np.any(np.diff(wave[order]) <= 0):
        raise ValueError("synthesis segments overlap; cannot concatenate them")
    n_star = star_id.size
    flux = np.empty((n_star, inst.grid.npix), np.float32)
    for i in range(0, n_star, chunk):
        rows = slice(i, min(i + chunk, n_star))
        hi_res = np.concatenate([np.asarray(segs[n][1][rows], np.float32) for n in names], 1)
        flux[rows] = degrade(wave[order], hi_res[:, order], inst)
        log(f"  {rows.stop}/{n_star} stars")
    if not np.all(np.isfinite(flux)):
        raise ValueError("non-finite flux after degradation")
    provenance = {
        "grid_path": str(src.resolve()),
        "grid_sha256": sha256_file(src),
        "grid_meta": meta,
        "synthesis_segments": names,
        "instrument": "Gaussian LSF at the 4MOST resolving power + flux-conserving binning "
                      "(specutils_cinn.instruments.degrade), no rotation, no renormalization",
        "script": "specutils-cinn emulator prepare",
        "date": _now(),
    }
    return labels, flux, star_id, holdout, inst, provenance


def _from_shards(folder: str | Path, setup: str, step: float | None) -> tuple:
    """Spectra of v2 grid shards, already on the native 4MOST grid after the LSF."""
    from ..synthesis.shards import read_shards

    g = read_shards(folder, setup)
    missing = [k for k in EMULATOR_LABELS if k not in g.labels]
    if missing:
        raise ValueError(f"{folder}: missing labels {missing}")
    native = fourmost_setup(setup)
    native_step = native.grid.segments[0].step
    factor = 1
    if step is not None:
        factor = int(round(step / native_step))
        if factor < 1 or abs(factor * native_step - step) > 1e-9:
            raise ValueError(f"the step must be a whole multiple of the native {native_step} A "
                             "for shards")
    segs, fluxes = [], []
    for s in native.grid.segments:
        wave, flux = g.segments[s.name]
        n = (wave.size // factor) * factor
        wave = wave[:n].reshape(-1, factor).mean(1)
        flux = flux[:, :n].reshape(len(g), -1, factor).mean(2)
        segs.append(GridSegment(s.name, round(float(wave[0]), 9), round(float(wave[-1]), 9),
                                s.step * factor))
        fluxes.append(flux.astype(np.float32))
    inst = InstrumentSetup(native.name, WavelengthGrid(tuple(segs), native.grid.medium),
                           dict(native.resolving_power))
    flux = np.concatenate(fluxes, axis=1)
    if flux.shape[1] != inst.grid.npix or not np.all(np.isfinite(flux)):
        raise ValueError("shard spectra do not match the setup or are not finite")
    provenance = {"shards": str(Path(folder).resolve()), "grid_meta": g.meta,
                  "instrument": "as stored in the shards (LSF + binning at the native "
                                f"sampling), averaged over {factor} native pixel(s)",
                  "script": "specutils-cinn emulator prepare --shards",
                  "date": _now()}
    return g.labels, flux, np.asarray(g.star_id), np.asarray(g.holdout, bool), inst, provenance


def emulator_validation_rows(grid: Any, config: str | Path) -> np.ndarray:
    """Rows of a synthesis grid in the validation split of the emulator trained from ``config``.

    Parameters
    ----------
    grid : `~specutils_cinn.synthesis.SynthesisGrid`
        The synthesis grid the emulator's data was made from.
    config : str or pathlib.Path
        The emulator configuration (the split is recomputed as
        `~specutils_cinn.emulator.pipeline.validation_rows` draws it).

    Returns
    -------
    numpy.ndarray
        Row indices of the grid.

    Raises
    ------
    ValueError
        If the grid does not hold every validation star exactly once.
    """
    conf = read_emulator_config(config)
    cfg = EmulatorConfig.from_dict(dict(conf.get("emulator", {})))
    data = load_training_data(conf["data"])
    stars = np.unique(data["star_id"][validation_rows(data, cfg)])
    out = np.flatnonzero(np.isin(np.asarray(grid.star_id), stars) & ~np.asarray(grid.holdout))
    if out.size != stars.size:
        raise ValueError(f"{out.size} grid rows for {stars.size} validation stars")
    return out


def prepare_holdout_sets(
    grid: str | Path,
    *,
    emulators: str | Path = "work/emulators",
    out_dir: str | Path = "work",
    stars: str = "holdout",
    configs: str | Path = "configs",
    seed: int = 2027,
    setups: Sequence[str] = ("hr", "lr"),
    log: Callable[[str], Any] = print,
    tag: str = "",
    vmacro_range: Sequence[float] | None = None,
) -> list[Path]:
    """Held-out Turbospectrum spectra on the grids of the emulator-trained cINN models.

    Takes stars of a synthesis grid, degrades their synthesis-resolution spectra with the
    instrument model (`specutils_cinn.instruments.degrade`: rotation with one v sin i per star
    drawn uniformly in 0-25 km/s, Gaussian LSF, binning) onto the model grid (the emulator
    grid cropped as in ``configs/4most-{hr,lr}-lte.toml``, `HOLDOUT_CROP`), and saves them as
    training sets.

    Parameters
    ----------
    grid : str or pathlib.Path
        The synthesis grid (``.h5`` or the seed grid's ``.npz``).
    emulators : str or pathlib.Path, optional
        Folder with ``4most-{hr,lr}-emulator``.
    out_dir : str or pathlib.Path, optional
        Where ``emu_{hr,lr}_holdout.npz`` (or ``_select.npz``) are written.
    stars : {"holdout", "emulator-validation"}, optional
        ``"holdout"``: the grid's held-out stars (``star_id % 10 == 9``: never seen by the
        emulator or the cINN), which ``specutils-cinn train`` evaluates as ``holdout`` and the
        validation pages report on. ``"emulator-validation"``: the stars each emulator was
        validated on (not fitted by it, not held out), written as ``emu_{hr,lr}_select.npz``:
        the ``selection`` set of the training configurations, which picks the cINN weights.
    configs : str or pathlib.Path, optional
        Folder with ``emulator-4most-{hr,lr}.toml`` (for ``"emulator-validation"``).
    seed : int, optional
        Seed of the v sin i draws.
    setups : sequence of {"hr", "lr"}, optional
        The setups to make.
    log : callable, optional
        Called with one line per file written.
    tag : str, optional
        With a v2 grid: the version tag of the names, e.g. ``"v2"`` for the emulators
        ``4most-{hr,lr}-emulator-v2``, the configurations ``emulator-4most-{hr,lr}-v2.toml``
        and the sets written ``emu_v2_{hr,lr}_{holdout,select}.npz``.
    vmacro_range : (float, float), optional
        With a v2 grid: also broaden each star by radial-tangential macroturbulence drawn
        uniformly from this range (km/s), as the v2 training configurations do.

    Returns
    -------
    list of pathlib.Path
        The training sets written.

    Notes
    -----
    ``grid`` may be a folder of v2 shards (`specutils_cinn.synthesis.shards`). Their spectra
    are already binned at the setups' native sampling, so rotation (and macroturbulence) are
    applied to the binned spectra with
    `~specutils_cinn.instruments.rotation.BinnedRotation`, the method of the training
    simulator, and the model grid is the emulator's whole grid (no crop).
    """
    from ..parameters import DEFAULT_PARAMETERS
    from ..synthesis.grid_file import read_grid
    from ..training import TrainingSet, save_training_set

    if stars not in ("holdout", "emulator-validation"):
        raise ValueError(f"stars must be 'holdout' or 'emulator-validation', got {stars!r}")
    if Path(grid).is_dir():
        return _shard_holdout_sets(Path(grid), emulators=Path(emulators), out_dir=Path(out_dir),
                                   stars=stars, configs=Path(configs), seed=seed, setups=setups,
                                   tag=tag, vmacro_range=vmacro_range, log=log)
    if tag or vmacro_range is not None:
        raise ValueError("tag and vmacro_range are for a v2 grid (a folder of shards)")
    g = read_grid(grid)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for name in setups:
        if stars == "holdout":
            hold = np.flatnonzero(g.holdout)
            what, suffix = "held-out stars (star_id % 10 == 9)", "holdout"
        else:
            hold = emulator_validation_rows(g, Path(configs) / f"emulator-4most-{name}.toml")
            what, suffix = "stars of the emulator's validation split", "select"
        vsini = np.random.default_rng(seed).uniform(0.0, 25.0, hold.size)
        emu = load_emulator(Path(emulators) / f"4most-{name}-emulator")
        crop = HOLDOUT_CROP[name]
        model_grid, _ = crop_grid(emu.grid, crop.get("segments"), crop.get("wavelength_range"))
        full = InstrumentSetup.from_dict(emu.metadata["setup"])
        inst = InstrumentSetup(full.name, model_grid,
                               {s.name: full.resolving_power[s.name] for s in model_grid.segments})
        names = [s for s in SYNTHESIS_SEGMENTS[name] if s in g.segments] or ["full"]
        wave = np.concatenate([g.segments[s][0] for s in names])
        hi = np.concatenate([g.segments[s][1][hold] for s in names], axis=1)
        flux = degrade(wave, hi, inst, vsini=vsini)
        labels = np.column_stack([vsini if p == "vsini" else g.labels[p][hold]
                                  for p in DEFAULT_PARAMETERS])
        rp = emu.metadata["resolving_power"]
        ts = TrainingSet(flux.astype(np.float32), labels, list(DEFAULT_PARAMETERS), model_grid,
                         {s.name: rp[s.name] for s in model_grid.segments}, {
                             "source": f"{grid}: {what}",
                             "source_sha256": sha256_file(grid), "n_stars": int(hold.size),
                             "vsini": "uniform 0-25 km/s, one per star",
                             "instrument": "specutils_cinn.instruments.degrade",
                             "script": "specutils-cinn emulator holdout"})
        out = Path(out_dir) / f"emu_{name}_{suffix}.npz"
        save_training_set(out, ts)
        log(f"{out}: {flux.shape[0]} spectra x {flux.shape[1]} px")
        written.append(out)
    return written


def _shard_holdout_sets(shards: Path, *, emulators: Path, out_dir: Path, stars: str,
                        configs: Path, seed: int, setups: Sequence[str], tag: str,
                        vmacro_range: Sequence[float] | None,
                        log: Callable[[str], Any]) -> list[Path]:
    """`prepare_holdout_sets` for a folder of v2 shards (see its Notes)."""
    import torch

    from ..instruments.rotation import BinnedRotation
    from ..parameters import DEFAULT_PARAMETERS
    from ..synthesis.shards import read_shards
    from ..training import TrainingSet, save_training_set

    if not tag:
        raise ValueError("a v2 grid needs a tag (e.g. 'v2') for the emulator and file names")
    lo, hi = (0.0, 0.0) if vmacro_range is None else map(float, vmacro_range)
    if not (0.0 <= lo <= hi and math.isfinite(hi)):
        raise ValueError(f"vmacro_range must be two increasing non-negative numbers, got "
                         f"{vmacro_range!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in setups:
        g = read_shards(shards, name)
        if stars == "holdout":
            hold = np.flatnonzero(g.holdout)
            what, suffix = "held-out stars (star_id % 10 == 9)", "holdout"
        else:
            hold = emulator_validation_rows(g, configs / f"emulator-4most-{name}-{tag}.toml")
            what, suffix = "stars of the emulator's validation split", "select"
        emu = load_emulator(emulators / f"4most-{name}-emulator-{tag}")
        flux = np.concatenate([g.segments[s.name][1][hold] for s in emu.grid.segments], axis=1)
        if flux.shape[1] != emu.grid.npix:
            raise ValueError(f"the shards' {name} spectra have {flux.shape[1]} pixels, the "
                             f"emulator's grid {emu.grid.npix}")
        rng = np.random.default_rng(seed)
        vsini = rng.uniform(0.0, 25.0, hold.size)
        vmacro = rng.uniform(lo, hi, hold.size)
        rot = BinnedRotation(emu.grid, max_vsini=25.0, max_vmacro=max(hi, 1.0))
        with torch.no_grad():
            out = rot(torch.from_numpy(flux.astype(np.float64)), torch.from_numpy(vsini),
                      vmacro=torch.from_numpy(vmacro) if hi > 0 else None).numpy()
        labels = np.column_stack([vsini if p == "vsini" else g.labels[p][hold]
                                  for p in DEFAULT_PARAMETERS])
        # the model grid exactly as the training simulator builds it from the emulator's
        model_grid, keep = crop_grid(emu.grid, None, None)
        rp = emu.metadata["resolving_power"]
        ts = TrainingSet(out[:, keep].astype(np.float32), labels, list(DEFAULT_PARAMETERS),
                         model_grid, {s.name: rp[s.name] for s in model_grid.segments}, {
                             "source": f"{shards}: {what}", "n_stars": int(hold.size),
                             "shards": sorted(p.name for p in shards.glob("shard_*.h5")),
                             "vsini": "uniform 0-25 km/s, one per star",
                             "vmacro": (None if hi <= 0 else
                                        f"radial-tangential, uniform {lo:g}-{hi:g} km/s"),
                             "instrument": "shards at native sampling after the LSF; rotation "
                                           "by specutils_cinn.instruments.rotation."
                                           "BinnedRotation",
                             "script": "specutils-cinn emulator holdout"})
        path = out_dir / f"emu_{tag}_{name}_{suffix}.npz"
        save_training_set(path, ts)
        log(f"{path}: {out.shape[0]} spectra x {out.shape[1]} px")
        written.append(path)
    return written
