"""Synthesis grid files: labels and continuum-normalized spectra at synthesis resolution (HDF5).

A grid file holds, for ``N`` stars, their labels, the synthetic spectra of each wavelength
segment (air Angstrom, continuum-normalized, no rotation, macroturbulence, instrumental
broadening or noise) and the provenance of the synthesis. Layout (format version 1)::

    /                      attrs: format, format_version, medium, created, package_version,
                                  provenance (JSON: code, line lists, solar scale, design, ...)
    /labels/<name>         float64 [N]    teff (K), logg, fe_h, vmic (km/s), <x>_fe, a_li, li_fe
    /star_id               int64   [N]    index of the star in the label design
    /holdout               bool    [N]    held-out stars (never train on them)
    /segments/<seg>/wavelength  float64 [P_seg]
    /segments/<seg>/flux        float32 [N, P_seg]
    /atmosphere/<field>    per-star atmosphere provenance (strings, booleans, numbers)
    /seconds               float64 [N]    synthesis wall time per star
    /cpu_seconds           float64 [N]    CPU time of the Turbospectrum runs per star (optional)

Only finished stars are stored. `read_grid` also reads the seed grid's ``.npz`` layout
(``label_<name>``, ``<segment>`` and ``grid_<segment>`` arrays), so both kinds of file can be
used wherever a grid is expected.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "GRID_FORMAT",
    "GRID_FORMAT_VERSION",
    "SynthesisGrid",
    "holdout_mask",
    "read_grid",
    "write_grid",
]

GRID_FORMAT = "specutils-cinn-synthesis-grid"
GRID_FORMAT_VERSION = 1
#: Stars with ``star_id % HOLDOUT_MODULUS == HOLDOUT_REMAINDER`` are held out.
HOLDOUT_MODULUS = 10
HOLDOUT_REMAINDER = 9


def holdout_mask(star_id: Any) -> np.ndarray:
    """Which stars are held out from every kind of training (one in ten, by design index).

    Parameters
    ----------
    star_id : array-like of int
        Indices of the stars in the label design.

    Returns
    -------
    `numpy.ndarray` of bool
        True for ``star_id % 10 == 9``.
    """
    sid = np.asarray(star_id, dtype=np.int64)
    return (sid % HOLDOUT_MODULUS) == HOLDOUT_REMAINDER


@dataclass
class SynthesisGrid:
    """Labels and synthetic spectra of a grid of stars.

    Parameters
    ----------
    labels : dict of str to `numpy.ndarray`
        One ``[N]`` array per label.
    star_id : `numpy.ndarray`
        ``[N]`` indices of the stars in the label design.
    segments : dict of str to (`numpy.ndarray`, `numpy.ndarray`)
        Per segment name, the wavelengths ``[P]`` (air Angstrom) and the continuum-normalized
        flux ``[N, P]``.
    holdout : `numpy.ndarray`, optional
        ``[N]`` booleans; default `holdout_mask` of ``star_id``.
    atmosphere : dict of str to `numpy.ndarray`, optional
        Per-star atmosphere provenance (e.g. ``file``, ``interpolated``, ``filled``).
    seconds : `numpy.ndarray`, optional
        ``[N]`` synthesis wall time per star.
    cpu_seconds : `numpy.ndarray`, optional
        ``[N]`` CPU time of the Turbospectrum programs per star (NaN where not recorded).
    meta : dict, optional
        Provenance of the whole grid.
    """

    labels: dict[str, np.ndarray]
    star_id: np.ndarray
    segments: dict[str, tuple[np.ndarray, np.ndarray]]
    holdout: np.ndarray | None = None
    atmosphere: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: np.ndarray | None = None
    cpu_seconds: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.star_id = np.asarray(self.star_id, dtype=np.int64)
        n = self.star_id.shape[0]
        if self.holdout is None:
            self.holdout = holdout_mask(self.star_id)
        self.holdout = np.asarray(self.holdout, dtype=bool)
        for name, values in self.labels.items():
            if np.shape(values) != (n,):
                raise ValueError(f"label {name!r} has shape {np.shape(values)}, expected ({n},)")
        for name, (wave, flux) in self.segments.items():
            if np.ndim(wave) != 1 or np.shape(flux) != (n, np.shape(wave)[0]):
                raise ValueError(
                    f"segment {name!r}: flux shape {np.shape(flux)} does not match "
                    f"{n} stars x {np.shape(wave)[0]} wavelengths"
                )
        if self.holdout.shape != (n,):
            raise ValueError(f"holdout has shape {self.holdout.shape}, expected ({n},)")

    def __len__(self) -> int:
        return int(self.star_id.shape[0])

    @property
    def label_names(self) -> list[str]:
        """Names of the labels, in file order."""
        return list(self.labels)

    def label_array(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Labels as an ``[N, len(names)]`` float64 array.

        Parameters
        ----------
        names : sequence of str
            Label names; ``li_fe`` is derived from ``a_li`` and ``fe_h`` when it is missing.

        Returns
        -------
        `numpy.ndarray`
        """
        cols = []
        for name in names:
            if name in self.labels:
                cols.append(np.asarray(self.labels[name], dtype=np.float64))
            else:
                raise KeyError(f"label {name!r} is not in this grid (has {self.label_names})")
        return np.stack(cols, axis=1) if cols else np.zeros((len(self), 0))

    def subset(self, rows: Any) -> SynthesisGrid:
        """A new grid with only the given rows (index array or boolean mask)."""
        idx = np.arange(len(self))[rows]
        return SynthesisGrid(
            labels={k: v[idx] for k, v in self.labels.items()},
            star_id=self.star_id[idx],
            segments={k: (w, f[idx]) for k, (w, f) in self.segments.items()},
            holdout=self.holdout[idx],
            atmosphere={k: v[idx] for k, v in self.atmosphere.items()},
            seconds=None if self.seconds is None else self.seconds[idx],
            cpu_seconds=None if self.cpu_seconds is None else self.cpu_seconds[idx],
            meta=dict(self.meta),
        )


def _read_npz(path: Path, segments: list[str] | None) -> SynthesisGrid:
    with np.load(path, allow_pickle=False) as data:
        labels = {k[len("label_"):]: data[k].astype(np.float64) for k in data.files
                  if k.startswith("label_")}
        names = [k[len("grid_"):] for k in data.files if k.startswith("grid_")]
        segs = {}
        for name in names:
            if segments is not None and name not in segments:
                continue
            start, stop, step = (float(x) for x in data[f"grid_{name}"])
            wave = np.arange(start, stop + step / 2, step)
            flux = data[name].astype(np.float32)
            segs[name] = (wave, flux)
        star_id = data["star_id"]
        atmos = {"source": data["atmosphere"]} if "atmosphere" in data.files else {}
    meta = {"source_file": str(path), "note": "seed grid (.npz layout)"}
    return SynthesisGrid(labels, star_id, segs, atmosphere=atmos, meta=meta)


def read_grid(path: str | os.PathLike[str], *, segments: list[str] | None = None) -> SynthesisGrid:
    """Read a synthesis grid file (HDF5, or the seed grid's ``.npz`` layout).

    Parameters
    ----------
    path : path-like
        The file.
    segments : list of str, optional
        Read only these segments (default: all).

    Returns
    -------
    `SynthesisGrid`

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a synthesis grid of a supported format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no synthesis grid file at {path}")
    if path.suffix == ".npz":
        return _read_npz(path, segments)
    import h5py

    with h5py.File(path, "r") as h5:
        fmt = h5.attrs.get("format")
        if fmt != GRID_FORMAT:
            raise ValueError(f"{path} is not a specutils-cinn synthesis grid (format={fmt!r})")
        version = int(h5.attrs.get("format_version", -1))
        if version != GRID_FORMAT_VERSION:
            raise ValueError(
                f"{path} has grid format version {version}; this package reads "
                f"version {GRID_FORMAT_VERSION}"
            )
        labels = {k: h5["labels"][k][()] for k in h5["labels"]}
        star_id = h5["star_id"][()]
        holdout = h5["holdout"][()]
        segs = {}
        for name in h5["segments"]:
            if segments is not None and name not in segments:
                continue
            grp = h5["segments"][name]
            segs[name] = (grp["wavelength"][()], grp["flux"][()])
        atmos = {}
        if "atmosphere" in h5:
            for k in h5["atmosphere"]:
                v = h5["atmosphere"][k][()]
                if v.dtype.kind in "SO":
                    v = np.asarray([x.decode() if isinstance(x, bytes) else str(x) for x in v])
                atmos[k] = v
        seconds = h5["seconds"][()] if "seconds" in h5 else None
        cpu_seconds = h5["cpu_seconds"][()] if "cpu_seconds" in h5 else None
        meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
    if "provenance" in meta:
        meta["provenance"] = json.loads(meta["provenance"])
    return SynthesisGrid(labels, star_id, segs, holdout=holdout, atmosphere=atmos,
                         seconds=seconds, cpu_seconds=cpu_seconds, meta=meta)


def write_grid(
    path: str | os.PathLike[str],
    grid: SynthesisGrid,
    *,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a synthesis grid to an HDF5 file (format version 1).

    Parameters
    ----------
    path : path-like
        Output file (``.h5``). Written to a temporary name first, then renamed.
    grid : `SynthesisGrid`
        The stars to write.
    provenance : mapping, optional
        JSON-serializable provenance (code version, line lists, solar scale, design, ...);
        default ``grid.meta.get("provenance", {})``.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    `pathlib.Path`
        The file written.
    """
    import h5py

    from .. import __version__

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    prov = dict(provenance if provenance is not None else grid.meta.get("provenance", {}))
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = GRID_FORMAT
        h5.attrs["format_version"] = GRID_FORMAT_VERSION
        h5.attrs["medium"] = "air"
        h5.attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        h5.attrs["package_version"] = __version__
        h5.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
        lab = h5.create_group("labels")
        for name, values in grid.labels.items():
            lab.create_dataset(name, data=np.asarray(values, dtype=np.float64))
        h5.create_dataset("star_id", data=grid.star_id)
        h5.create_dataset("holdout", data=grid.holdout)
        if grid.seconds is not None:
            h5.create_dataset("seconds", data=np.asarray(grid.seconds, dtype=np.float64))
        if grid.cpu_seconds is not None:
            h5.create_dataset("cpu_seconds", data=np.asarray(grid.cpu_seconds, dtype=np.float64))
        segs = h5.create_group("segments")
        for name, (wave, flux) in grid.segments.items():
            g = segs.create_group(name)
            g.create_dataset("wavelength", data=np.asarray(wave, dtype=np.float64))
            flux = np.asarray(flux, dtype=np.float32)
            chunks = (1, flux.shape[1]) if flux.shape[0] else None
            g.create_dataset("flux", data=flux, chunks=chunks, compression="gzip",
                             compression_opts=4, shuffle=True)
        if grid.atmosphere:
            atm = h5.create_group("atmosphere")
            for k, v in grid.atmosphere.items():
                v = np.asarray(v)
                if v.dtype.kind in "UO":
                    v = np.asarray([str(x) for x in v], dtype=h5py.string_dtype())
                atm.create_dataset(k, data=v)
    os.replace(tmp, path)
    return path
