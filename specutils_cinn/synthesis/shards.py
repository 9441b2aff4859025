"""Grid shards: finished stars at 4MOST's native sampling after the line-spread function.

The v2 synthesis grid is kept in the repository (under the top-level ``grid/`` folder, which is
not part of the wheel or the sdist), so a run survives a change of machine: each shard is a small
HDF5 file holding a fixed block of stars of the label design (``star_id // shard_size``), written
once all of them are finished and committed as the run goes.

Each star's synthetic spectrum is stored as it would be observed by every 4MOST setup before
rotation, macroturbulence, radial velocity and noise: convolved with the setup's line-spread
function and averaged over its pixels (`~specutils_cinn.instruments.degrade`), HR as its three
arms HB, HG, HR at 0.05 A and LR as 3700-9500 A at 0.25 A. Rotation and macroturbulence can be
applied afterwards because convolutions commute. The flux is stored as the line depth ``1 - F``
in float16 (absolute error below 2.5e-4 for depths under 0.5, relative 5e-4 above), with the
shuffle filter and gzip level 9: about 60-90 KB per star.

Layout of a shard (format version 1)::

    /                        attrs: format, format_version, created, package_version,
                                    provenance (JSON), setups (JSON: segments per setup)
    /star_id                 int64   [n]
    /labels/<name>           float64 [n]
    /spectra/<setup>/depth   float16 [n, npix]   1 - F, segments concatenated
    /info                    JSON string per star (atmosphere, lithium physics, CPU seconds,
                             pruning counts)
    attrs["failed"]          JSON list of {"star_id", "error"} for stars of the block that failed
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .grid_file import SynthesisGrid, holdout_mask

__all__ = ["SHARD_FORMAT", "SHARD_FORMAT_VERSION", "GridProduct", "fetch_grid", "grid_product",
           "instrument_spectra", "read_shards", "shard_name", "shard_star_ids", "write_shard"]

SHARD_FORMAT = "specutils-cinn-grid-shard"
SHARD_FORMAT_VERSION = 1
_NAME = re.compile(r"^shard_(\d{5})\.h5$")


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``shard_00012.h5``)."""
    return f"shard_{int(index):05d}.h5"


def _setup(name: str):
    from ..instruments import fourmost_setup

    return fourmost_setup(name)


def instrument_spectra(wavelength: np.ndarray, flux: np.ndarray,
                       setups: Sequence[str] = ("hr", "lr")) -> dict[str, np.ndarray]:
    """A synthetic spectrum as each 4MOST setup records it (LSF and pixels, nothing else).

    Parameters
    ----------
    wavelength, flux : numpy.ndarray
        The synthesis (air Angstrom, strictly increasing; continuum-normalized flux). Must
        cover every segment of the setups with a few Angstrom to spare.
    setups : sequence of {"hr", "lr"}

    Returns
    -------
    dict of str to numpy.ndarray
        Flux on each setup's native pixel grid (float64, segments concatenated).
    """
    from ..instruments.degradation import degrade

    w = np.asarray(wavelength, dtype=np.float64)
    f = np.asarray(flux, dtype=np.float64)
    return {name: np.asarray(degrade(w, f, _setup(name)), dtype=np.float64) for name in setups}


def write_shard(path: str | os.PathLike[str], *, star_id: Sequence[int],
                labels: Mapping[str, Sequence[float]], spectra: Mapping[str, np.ndarray],
                info: Sequence[Mapping[str, Any]], provenance: Mapping[str, Any],
                failed: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write one shard atomically (see the module docstring for the layout).

    Parameters
    ----------
    path : path-like
        The shard file (``shard_XXXXX.h5``).
    star_id : sequence of int
        The stars, in order.
    labels : mapping of str to sequence of float
        Per label, one value per star.
    spectra : mapping of str to numpy.ndarray
        Per setup, flux ``[n, npix]`` on its native grid (:func:`instrument_spectra`).
    info : sequence of mapping
        Per star, JSON-serializable provenance.
    provenance : mapping
        The run's provenance (code, line lists, design, ...).
    failed : sequence of mapping
        Stars of the block that failed (``star_id`` and ``error``).

    Returns
    -------
    pathlib.Path
    """
    import h5py

    from .. import __version__

    path = Path(path)
    ids = np.asarray(star_id, dtype=np.int64)
    n = ids.size
    if len(info) != n:
        raise ValueError(f"info has {len(info)} entries for {n} stars")
    setups_meta = {}
    for name, flux in spectra.items():
        flux = np.asarray(flux)
        setup = _setup(name)
        if flux.shape != (n, setup.grid.npix):
            raise ValueError(f"spectra[{name!r}] must have shape ({n}, {setup.grid.npix}), "
                             f"got {flux.shape}")
        if not np.all(np.isfinite(flux)):
            raise ValueError(f"spectra[{name!r}] has non-finite values")
        setups_meta[name] = [[s.name, float(s.centers[0]), float(s.centers[1] - s.centers[0]),
                              int(s.npix)] for s in setup.grid.segments]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = SHARD_FORMAT
        h5.attrs["format_version"] = SHARD_FORMAT_VERSION
        h5.attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        h5.attrs["package_version"] = __version__
        h5.attrs["provenance"] = json.dumps(provenance, default=str)
        h5.attrs["setups"] = json.dumps(setups_meta)
        h5.attrs["failed"] = json.dumps(list(failed), default=str)
        h5.create_dataset("star_id", data=ids)
        grp = h5.create_group("labels")
        for name, values in labels.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (n,):
                raise ValueError(f"label {name!r} must have {n} values, got {values.shape}")
            grp.create_dataset(name, data=values)
        for name, flux in spectra.items():
            depth = (1.0 - np.asarray(flux, dtype=np.float64)).astype(np.float16)
            h5.create_dataset(f"spectra/{name}/depth", data=depth,
                              chunks=(1, depth.shape[1]) if n else None, shuffle=True,
                              compression="gzip", compression_opts=9)
        h5.create_dataset("info", data=np.array([json.dumps(i, default=str) for i in info],
                                                 dtype=object),
                          dtype=h5py.string_dtype())
    os.replace(tmp, path)
    return path


def _shard_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("shard_*.h5") if _NAME.match(p.name))


def shard_star_ids(folder: str | os.PathLike[str]) -> tuple[set[int], set[int]]:
    """Stars already stored (or recorded as failed) in a folder of shards.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    done, failed : set of int
    """
    import h5py

    done: set[int] = set()
    failed: set[int] = set()
    for path in _shard_files(Path(folder)):
        with h5py.File(path, "r") as h5:
            done.update(int(i) for i in h5["star_id"][:])
            failed.update(int(f["star_id"]) for f in json.loads(h5.attrs.get("failed", "[]")))
    return done, failed


def read_shards(folder: str | os.PathLike[str], setup: str) -> SynthesisGrid:
    """Read every shard of a folder as one `~specutils_cinn.synthesis.grid_file.SynthesisGrid`.

    Parameters
    ----------
    folder : path-like
        The shard folder (e.g. ``grid/4most-lte-v2``).
    setup : {"hr", "lr"}
        Which setup's spectra to return; each of its segments becomes a grid segment at the
        native pixel centers (flux, not depth).

    Returns
    -------
    SynthesisGrid
        Sorted by ``star_id``; ``holdout`` by the design rule; the run's provenance is in
        ``meta`` and per-star records in ``atmosphere`` (family, interpolation, lithium
        physics).

    Raises
    ------
    FileNotFoundError
        If the folder holds no shard.
    ValueError
        If a file is not a shard of this format, or shards disagree on labels or segments.
    """
    import h5py

    files = _shard_files(Path(folder))
    if not files:
        raise FileNotFoundError(f"no shard_*.h5 files in {folder}")
    ids, labels, depth, infos = [], {}, [], []
    provenance: dict = {}
    meta = None
    for path in files:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != SHARD_FORMAT:
                raise ValueError(f"{path} is not a {SHARD_FORMAT} file")
            if int(h5.attrs["format_version"]) > SHARD_FORMAT_VERSION:
                raise ValueError(f"{path}: format version {h5.attrs['format_version']} is newer "
                                 "than this package reads; upgrade specutils-cinn")
            m = json.loads(h5.attrs["setups"])
            if setup not in m:
                raise ValueError(f"{path} has no spectra of setup {setup!r} (has {sorted(m)})")
            if meta is None:
                meta = m[setup]
                provenance = json.loads(h5.attrs["provenance"])
            elif m[setup] != meta:
                raise ValueError(f"{path}: segments of {setup!r} differ from the other shards")
            n = h5["star_id"].shape[0]
            if n == 0:
                continue
            ids.append(h5["star_id"][:])
            names = sorted(h5["labels"])
            if labels and sorted(labels) != names:
                raise ValueError(f"{path}: labels {names} differ from {sorted(labels)}")
            for name in names:
                labels.setdefault(name, []).append(h5["labels"][name][:])
            depth.append(h5[f"spectra/{setup}/depth"][:].astype(np.float32))
            infos += [json.loads(s) for s in h5["info"].asstr()[:]]
    star_id = np.concatenate(ids)
    order = np.argsort(star_id)
    flux = 1.0 - np.concatenate(depth)[order]
    segments, start = {}, 0
    for name, first, step, npix in meta:
        wave = first + step * np.arange(npix)
        segments[name] = (wave, flux[:, start:start + npix])
        start += npix
    infos = [infos[i] for i in order]
    keys = sorted({k for i in infos for k in i.get("atmosphere", {})} | {"li_physics"})
    atmosphere = {k: np.asarray([str(i.get("atmosphere", {}).get(k, i.get(k, "")))
                                 for i in infos]) for k in keys}
    return SynthesisGrid(
        labels={k: np.concatenate(v)[order] for k, v in labels.items()},
        star_id=star_id[order],
        segments=segments,
        holdout=holdout_mask(star_id[order]),
        atmosphere=atmosphere,
        seconds=np.asarray([i.get("seconds", np.nan) for i in infos], dtype=np.float64),
        cpu_seconds=np.asarray([i.get("cpu_seconds", np.nan) for i in infos], dtype=np.float64),
        meta=provenance,
    )


@dataclass(frozen=True)
class GridProduct:
    """A synthesis grid published as a data product: its shards, with SHA-256 and size.

    Registered under ``"grids"`` in the package's ``registry.json`` (the same registry and the
    same verified downloads as the models, `~specutils_cinn.model`).

    Parameters
    ----------
    name, version : str
        E.g. ``"4most-lte-v2"`` and ``"2.0.0"``; the full name is ``"<name>-v<version>"``.
    description : str
        What the grid holds (physics, label ranges, number of stars).
    base_url : str
        Where the shard files are published; ``{version}``, ``{name}`` and ``{full_name}`` are
        substituted.
    files : tuple of `~specutils_cinn.model.RegistryFile`
        The shards.
    """

    name: str
    version: str
    description: str
    base_url: str
    files: tuple

    @property
    def full_name(self) -> str:
        """``"<name>-v<version>"``."""
        return f"{self.name}-v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """The entry as stored under ``"grids"`` in ``registry.json``."""
        return {"name": self.name, "version": self.version, "description": self.description,
                "base_url": self.base_url, "files": [f.to_dict() for f in self.files]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], key: str | None = None) -> GridProduct:
        """Parse a ``registry.json`` grid entry (see `to_dict`).

        Raises
        ------
        ValueError
            If a field is missing or malformed, or ``key`` is not the full name.
        """
        from ..model import RegistryFile

        try:
            files = tuple(RegistryFile(str(f["filename"]), str(f["sha256"]), f.get("size"))
                          for f in d["files"])
            out = cls(str(d["name"]), str(d["version"]), str(d.get("description", "")),
                      str(d["base_url"]), files)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"registry grid entry {key!r} is malformed: {exc!r}") from None
        if key is not None and key != out.full_name:
            raise ValueError(f"registry grid entry {key!r} must be named {out.full_name!r}")
        if any(f.size is None for f in out.files):
            raise ValueError(f"registry grid entry {key!r}: every file needs a size")
        if any(not _NAME.match(f.filename) for f in out.files):
            raise ValueError(f"registry grid entry {key!r}: files must be shard_NNNNN.h5")
        return out


def grid_product(folder: str | os.PathLike[str], *, name: str, version: str,
                 description: str, base_url: str) -> GridProduct:
    """Describe a folder of shards as a `GridProduct` (hash and size of every shard).

    Parameters
    ----------
    folder : path-like
        E.g. ``grid/4most-lte-v2``.
    name, version, description, base_url : str
        See `GridProduct`.

    Returns
    -------
    GridProduct
    """
    from .._hashing import sha256_file
    from ..model import RegistryFile

    files = tuple(RegistryFile(p.name, sha256_file(p), p.stat().st_size)
                  for p in _shard_files(Path(folder)))
    if not files:
        raise FileNotFoundError(f"no shard_*.h5 files in {folder}")
    return GridProduct(name, version, description, base_url, files)


def fetch_grid(name: str, *, cache_dir: str | os.PathLike[str] | None = None,
               progressbar: bool = False, registry: Any = None) -> Path:
    """Download a registered grid (its shards, each verified) and return its folder.

    Shards already in the cache with the registered SHA-256 are not downloaded again. Read the
    result with `read_shards`.

    Parameters
    ----------
    name : str
        The grid's full name (``"<name>-v<version>"``) or its name (the highest version).
    cache_dir : path-like, optional
        Default `~specutils_cinn.model.cache_dir`; the shards go to
        ``<cache>/grids/<full name>/``.
    progressbar : bool
        Show download progress.
    registry : `~specutils_cinn.model.Registry`, optional
        Default: the package's registry.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    KeyError
        If no grid of that name is registered.
    specutils_cinn.model.ModelDownloadError
        If a download fails.
    specutils_cinn.model.ModelIntegrityError
        If a downloaded file's size or SHA-256 does not match the registry.
    """
    from packaging.version import Version

    from .._hashing import sha256_file
    from ..model import REGISTRY, download_file
    from ..model import cache_dir as default_cache_dir

    table = (registry if registry is not None else REGISTRY).grids
    entries = {k: GridProduct.from_dict(v, k) for k, v in table.items()}
    if name in entries:
        product = entries[name]
    else:
        candidates = [e for e in entries.values() if e.name == name]
        if not candidates:
            raise KeyError(f"no grid {name!r} in the registry (registered: "
                           f"{sorted(entries) or 'none'})")
        product = max(candidates, key=lambda e: Version(e.version))
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / "grids" / product.full_name
    folder.mkdir(parents=True, exist_ok=True)
    base = product.base_url.format(version=product.version, name=product.name,
                                   full_name=product.full_name)
    for f in product.files:
        target = folder / f.filename
        if target.is_file() and target.stat().st_size == f.size and \
                sha256_file(target) == f.sha256:
            continue
        download_file(base.rstrip("/") + "/" + f.filename, f, target, progressbar)
    return folder
