"""The emulator's release stages: train from a configuration, measure its error per pixel.

The data these stages read is written by `specutils_cinn.emulator.prepare.prepare_training_data`
(``specutils-cinn emulator prepare``): an ``.npz`` with ``labels`` ``[n_star, n_label]``,
``label_names``, ``flux`` ``[n_star, npix]`` (after the instrumental LSF, before rotation and
noise), ``star_id``, ``holdout`` (held-out stars are never trained on nor used for early
stopping) and the JSON strings ``setup`` and ``provenance``; `load_training_data` reads it.

A configuration (``configs/emulator-4most-*.toml``) has ``data`` and ``out`` (paths relative
to the configuration file), an optional ``name``, and an ``[emulator]`` table of
`~specutils_cinn.emulator.EmulatorConfig` options; `read_emulator_config` reads it,
`train_from_config` trains and saves the emulator (``specutils-cinn emulator train``), and
`measure_pixel_error` writes the error per pixel that ``[simulator] emulator_error`` of a cINN
training configuration reads (``specutils-cinn emulator error``).
"""

from __future__ import annotations

import datetime
import json
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..instruments import InstrumentSetup
from .accuracy import hat_weights, pixel_error, residual_statistics
from .accuracy import teff_nodes as checked_teff_nodes
from .io import load_emulator, save_emulator
from .network import SpectrumEmulator
from .training import EmulatorConfig, train_emulator, validation_split

__all__ = [
    "ERROR_FLOOR",
    "ERROR_SMOOTH",
    "load_training_data",
    "measure_pixel_error",
    "read_emulator_config",
    "subset_training_stars",
    "train_and_save",
    "train_from_config",
    "validation_rows",
]

#: Pixels the squared residuals are averaged over by `measure_pixel_error`.
ERROR_SMOOTH = 5
#: Smallest error per pixel written by `measure_pixel_error`.
ERROR_FLOOR = 1e-3


def load_training_data(path: str | Path) -> dict[str, Any]:
    """Read an emulator data file (the layout in the module docstring).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.npz`` written by `~specutils_cinn.emulator.prepare.prepare_training_data`.

    Returns
    -------
    dict
        ``labels``, ``flux``, ``star_id`` and ``holdout`` (arrays), ``label_names`` (list of
        str), ``setup`` (`~specutils_cinn.instruments.InstrumentSetup`) and ``provenance``
        (dict).
    """
    with np.load(path, allow_pickle=False) as d:
        out: dict[str, Any] = {k: d[k] for k in ("labels", "flux", "star_id", "holdout")}
        out["label_names"] = [str(n) for n in d["label_names"]]
        out["setup"] = InstrumentSetup.from_dict(json.loads(str(d["setup"])))
        out["provenance"] = json.loads(str(d["provenance"]))
    return out


def read_emulator_config(path: str | Path | None) -> dict[str, Any]:
    """Read an emulator configuration (TOML).

    Parameters
    ----------
    path : str or pathlib.Path or None
        The configuration file; None gives an empty configuration.

    Returns
    -------
    dict
        The TOML tables, with ``data`` and ``out`` resolved relative to the configuration
        file's directory.
    """
    if not path:
        return {}
    with open(path, "rb") as fh:
        conf = tomllib.load(fh)
    for key in ("data", "out"):
        if key in conf:
            conf[key] = str((Path(path).parent / conf[key]).resolve())
    return conf


def subset_training_stars(star_id: np.ndarray, holdout: np.ndarray, fraction: float,
                          seed: int) -> np.ndarray:
    """Choose a random fraction of the stars that are not held out.

    Parameters
    ----------
    star_id : numpy.ndarray
        Star of each row.
    holdout : numpy.ndarray
        Boolean: rows of held-out stars.
    fraction : float
        Fraction of the non-held-out stars kept (at least two stars).
    seed : int
        Seed of the random choice.

    Returns
    -------
    numpy.ndarray
        Boolean row mask; held-out rows are always False.
    """
    stars = np.unique(star_id[~holdout])
    n = max(2, int(round(fraction * stars.size)))
    keep = np.random.default_rng(seed).choice(stars, min(n, stars.size), replace=False)
    return np.isin(star_id, keep) & ~holdout


def validation_rows(data: Mapping[str, Any], config: EmulatorConfig) -> np.ndarray:
    """Rows in the validation split that `train_and_save` (fraction 1) gives the emulator.

    The same whole stars, never held-out ones, for the same configuration and seed: the stars
    the emulator was validated on but not fitted to.

    Parameters
    ----------
    data : dict
        As returned by `load_training_data`.
    config : `~specutils_cinn.emulator.EmulatorConfig`
        The emulator's configuration (``seed`` and ``validation_fraction`` are used).

    Returns
    -------
    numpy.ndarray
        Indices of the rows, ascending.
    """
    rows = np.flatnonzero(subset_training_stars(data["star_id"], data["holdout"], 1.0,
                                                config.seed))
    split = validation_split(data["star_id"][rows], config.validation_fraction, config.seed)
    return rows[split]


def train_and_save(
    data: Mapping[str, Any],
    config: EmulatorConfig,
    out: str | Path | None,
    *,
    fraction: float = 1.0,
    device: str = "cpu",
    name: str = "emulator",
    log: Callable[[str], Any] = print,
    checkpoint: str | Path | None = None,
) -> tuple[SpectrumEmulator, dict[str, Any], dict[str, Any]]:
    """Train on (a fraction of) the training stars, evaluate on the held-out stars, save.

    Parameters
    ----------
    data : dict
        As returned by `load_training_data`.
    config : `~specutils_cinn.emulator.EmulatorConfig`
        Architecture and optimization settings.
    out : str or pathlib.Path or None
        Emulator directory to write (None: do not save).
    fraction : float, optional
        Fraction of the training stars trained on.
    device : str, optional
        Where to train.
    name : str, optional
        Name recorded in the emulator's metadata.
    log : callable, optional
        Called with progress messages.
    checkpoint : str or pathlib.Path, optional
        Training checkpoint to write and, if it exists, to continue from (see
        `~specutils_cinn.emulator.train_emulator`).

    Returns
    -------
    emulator : `~specutils_cinn.emulator.SpectrumEmulator`
    history : dict
        The training history of `~specutils_cinn.emulator.train_emulator`.
    accuracy : dict
        `~specutils_cinn.emulator.residual_statistics` on the held-out stars (without the
        per-pixel arrays), also stored in the metadata as ``accuracy_holdout``.
    """
    setup = data["setup"]
    use = subset_training_stars(data["star_id"], data["holdout"], fraction, config.seed)
    emu, hist = train_emulator(data["labels"][use], data["flux"][use], data["label_names"],
                               setup.grid, config, star_id=data["star_id"][use], device=device,
                               log=log, checkpoint=checkpoint)
    ho = data["holdout"]
    acc = residual_statistics(emu, data["labels"][ho], data["flux"][ho])
    acc.pop("residuals")
    acc.pop("per_star_p99")
    if out is not None:
        meta = {
            "name": name,
            "description": f"{setup.name} spectrum emulator (labels -> continuum-normalized flux "
                           "after the instrumental LSF, before rotation and noise)",
            "instrument_setup": setup.name,
            "setup": setup.to_dict(),
            "resolving_power": setup.to_dict()["resolving_power"],
            "normalization": {"kind": "continuum"},
            "training_grid": data["provenance"],
            "training_fraction": fraction,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "history": hist,
            "accuracy_holdout": acc,
        }
        save_emulator(out, emu, meta)
        size = sum(f.stat().st_size for f in Path(out).iterdir())
        log(f"saved {out} ({size / 1e6:.2f} MB)")
    return emu, hist, acc


def train_from_config(
    config: str | Path | None = None,
    *,
    data: str | Path | None = None,
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    fraction: float = 1.0,
    device: str = "cpu",
    log: Callable[[str], Any] = print,
    checkpoint: str | Path | None = None,
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Train and save a spectrum emulator from a TOML configuration.

    Parameters
    ----------
    config : str or pathlib.Path, optional
        Emulator configuration (``configs/emulator-4most-*.toml``, see the module docstring).
    data : str or pathlib.Path, optional
        Emulator data file (default: the configuration's ``data``).
    out : str or pathlib.Path, optional
        Emulator directory to write (default: the configuration's ``out``).
    overrides : dict, optional
        `~specutils_cinn.emulator.EmulatorConfig` options replacing the configuration's
        ``[emulator]`` table (e.g. ``{"steps": 100}``).
    fraction, device, log, checkpoint
        As in `train_and_save`.

    Returns
    -------
    out : pathlib.Path
        The emulator directory.
    history, accuracy : dict
        As returned by `train_and_save`.

    Raises
    ------
    ValueError
        If neither the arguments nor the configuration give ``data`` and ``out``, or an option
        is invalid.
    """
    conf = read_emulator_config(config)
    opts = dict(conf.get("emulator", {}))
    opts.update(overrides or {})
    cfg = EmulatorConfig.from_dict(opts)
    data_path = data or conf.get("data")
    out_path = out or conf.get("out")
    if not data_path or not out_path:
        raise ValueError("give the data and output paths (or a configuration with data and out)")
    out_path = Path(out_path)
    name = conf.get("name", out_path.name)
    _, hist, acc = train_and_save(load_training_data(data_path), cfg, out_path,
                                  fraction=fraction, device=device, name=name, log=log,
                                  checkpoint=checkpoint)
    return out_path, hist, acc


def measure_pixel_error(
    config: str | Path, output: str | Path, *, smooth: int = ERROR_SMOOTH,
    floor: float = ERROR_FLOOR, teff_nodes: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Write an emulator's error per pixel, from the stars it was validated on.

    Recomputes the validation split of `train_and_save` (same configuration and seed: whole
    stars, never the ``holdout`` stars), emulates those stars at their labels and writes the
    RMS of emulated minus synthetic flux per pixel (`~specutils_cinn.emulator.pixel_error`)
    as array ``sigma`` of an ``.npz`` file, with a JSON ``metadata`` string.
    ``[simulator] emulator_error`` of a training configuration reads it: the training spectra
    then get noise of that size per pixel, so that the cINN learns not to trust what the
    emulator gets wrong. The held-out stars are left for validating the cINN; their RMS is
    returned for comparison only.

    Parameters
    ----------
    config : str or pathlib.Path
        The emulator configuration it was trained from (``data`` and ``out`` are read).
    output : str or pathlib.Path
        The ``.npz`` to write.
    smooth : int, optional
        Squared residuals are averaged over this many neighboring pixels.
    floor : float, optional
        Smallest error per pixel.
    teff_nodes : sequence of float, optional
        Strictly increasing Teff (K) at which the error is measured; at least two, each with
        validation stars within its neighboring nodes.

    Returns
    -------
    dict
        ``sigma`` (the array written: ``[npix]``, or ``[len(teff_nodes), npix]``),
        ``holdout_sigma`` (the same from the held-out stars, not written), ``metadata``
        (written) and ``holdout_stars``.
    """
    nodes = None if teff_nodes is None else checked_teff_nodes(teff_nodes)
    conf = read_emulator_config(config)
    cfg = EmulatorConfig.from_dict(dict(conf.get("emulator", {})))
    data = load_training_data(conf["data"])
    emu = load_emulator(conf["out"])
    val = validation_rows(data, cfg)
    ho = data["holdout"]
    res = residual_statistics(emu, data["labels"][val], data["flux"][val])["residuals"]
    ho_res = residual_statistics(emu, data["labels"][ho], data["flux"][ho])["residuals"]
    extra: dict[str, Any] = {}
    if nodes is None:
        sigma = pixel_error(res, emu.grid, smooth=smooth, floor=floor)
        ho_sigma = pixel_error(ho_res, emu.grid, smooth=smooth, floor=floor)
    else:
        it = list(data["label_names"]).index("teff")
        w = hat_weights(data["labels"][val, it], nodes).numpy()
        w_ho = hat_weights(data["labels"][ho, it], nodes).numpy()
        empty = [float(t) for t, c in zip(nodes, w.sum(0), strict=True) if c < 1.0]
        if empty:
            raise ValueError(f"teff_nodes {empty} have less than one validation star's weight "
                             f"around them; choose nodes inside the grid's Teff range")
        sigma = np.stack([pixel_error(res, emu.grid, smooth=smooth, floor=floor, weights=c)
                          for c in w.T])
        ho_sigma = np.stack([pixel_error(ho_res, emu.grid, smooth=smooth, floor=floor,
                                         weights=c) if c.sum() > 0 else np.full(
                                             emu.grid.npix, np.nan, np.float32) for c in w_ho.T])
        extra = {"teff": nodes}
    meta = {"emulator": str(conf["out"]),
            "emulator_weights_sha256": emu.metadata.get("weights_sha256"),
            "stars": int(np.unique(data["star_id"][val]).size),
            "smooth_pixels": smooth, "floor": floor,
            "source": "validation stars of the emulator (not fitted, not held out)"}
    if nodes is not None:
        meta["teff_nodes"] = nodes.tolist()
        meta["stars_per_node"] = [round(float(c), 2) for c in w.sum(0)]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    np.savez(output, sigma=sigma, metadata=json.dumps(meta), **extra)
    return {"sigma": sigma, "holdout_sigma": ho_sigma, "metadata": meta,
            "holdout_stars": int(np.unique(data["star_id"][ho]).size)}
