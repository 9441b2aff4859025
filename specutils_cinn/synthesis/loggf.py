"""Astrophysical oscillator strengths: log gf calibrated against an observed solar spectrum.

The pieces of the calibration (driven by ``scripts/calibrate_loggf.py``) and of applying it:

- `separated_sets` splits candidate lines into sets whose members are far enough apart that one
  Turbospectrum run with all lines of a set perturbed gives each line's own response;
- `fit_loggf_changes` solves the linearized least-squares problem for the changes, with a
  Gaussian prior on each change (towards the laboratory value) and a cap;
- `LoggfCalibration` is the record of every change (an ECSV table with the source lists'
  SHA-256), and `LoggfCalibration.apply` writes a calibrated copy of a Turbospectrum line list
  by editing only the log gf field of the changed records, after checking that each record
  still holds the laboratory value the calibration started from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._hashing import sha256_file as _sha256

__all__ = ["LoggfCalibration", "calibrated_line_lists", "fit_loggf_changes", "separated_sets"]


def separated_sets(wavelength: np.ndarray, min_separation: float) -> list[np.ndarray]:
    """Split lines into sets whose members are at least ``min_separation`` apart.

    Greedy interval coloring in wavelength order: each line joins the first set whose last
    member is far enough away, so the number of sets is the largest number of lines within any
    ``min_separation`` stretch (optimal for intervals).

    Parameters
    ----------
    wavelength : numpy.ndarray
        Line wavelengths (Angstrom).
    min_separation : float
        Smallest allowed distance between two members of a set (Angstrom).

    Returns
    -------
    list of numpy.ndarray
        Indices into ``wavelength``, one array per set, each sorted by wavelength.
    """
    w = np.asarray(wavelength, dtype=np.float64)
    order = np.argsort(w, kind="stable")
    last: list[float] = []
    members: list[list[int]] = []
    for i in order:
        for k, end in enumerate(last):
            if w[i] - end >= min_separation:
                last[k] = w[i]
                members[k].append(int(i))
                break
        else:
            last.append(w[i])
            members.append([int(i)])
    return [np.array(m, dtype=np.int64) for m in members]


def fit_loggf_changes(residual: np.ndarray, response: Any, *, pixel_sigma: float,
                      prior_sigma: float, lower: np.ndarray, upper: np.ndarray,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """Changes of log gf that best explain a residual spectrum, to first order.

    Minimizes ``sum(w * (residual - response @ delta)**2) / pixel_sigma**2 +
    sum(delta**2) / prior_sigma**2`` subject to ``lower <= delta <= upper``.

    Parameters
    ----------
    residual : numpy.ndarray, shape ``(npix,)``
        Observed minus synthetic flux (0 where a pixel is not used).
    response : scipy.sparse matrix, shape ``(npix, nlines)``
        d flux / d log gf of each line.
    pixel_sigma : float
        Flux uncertainty per pixel including model mismatch (continuum units).
    prior_sigma : float
        Width of the Gaussian prior on each change (dex).
    lower, upper : numpy.ndarray, shape ``(nlines,)``
        Bounds on each change (dex).
    weights : numpy.ndarray, shape ``(npix,)``, optional
        Pixel weights in [0, 1] (0 = not used); default all 1.

    Returns
    -------
    numpy.ndarray
        The changes (dex), shape ``(nlines,)``.
    """
    import scipy.sparse as sp
    from scipy.optimize import lsq_linear

    w = np.ones(residual.size) if weights is None else np.asarray(weights, dtype=np.float64)
    sw = np.sqrt(w) / float(pixel_sigma)
    a = sp.diags(sw) @ sp.csr_matrix(response)
    n = a.shape[1]
    a = sp.vstack([a, sp.identity(n, format="csr") / float(prior_sigma)]).tocsr()
    b = np.concatenate([residual * sw, np.zeros(n)])
    res = lsq_linear(a, b, bounds=(lower, upper), lsmr_tol="auto", max_iter=200)
    return np.asarray(res.x)


def _record_lines(path: Path) -> tuple[list[str], np.ndarray]:
    """All text lines of a Turbospectrum list and the text-line number of each line record."""
    text = path.read_text().splitlines()
    where: list[int] = []
    i = 0
    while i < len(text):
        if not text[i].strip():
            i += 1
            continue
        nline = int(text[i].split("'")[2].split()[1])
        where.extend(range(i + 2, i + 2 + nline))
        i += 2 + nline
    return text, np.array(where, dtype=np.int64)


@dataclass
class LoggfCalibration:
    """The changes of a log gf calibration, per source line list.

    Parameters
    ----------
    changes : astropy.table.Table
        One row per changed line: ``list`` (name of the source list, a key of ``sources``),
        ``record`` (index of the line record in that file, 0-based, in file order),
        ``element``, ``ion``, ``wavelength``, ``chi``, ``loggf_lab`` (the value in the source
        file) and ``delta`` (the change, dex).
    sources : dict of str to str
        SHA-256 of each source list the records refer to.
    meta : dict
        How the calibration was made (observed spectrum, resolving power, fit settings,
        residuals before and after); written to the ECSV header.
    """

    changes: Any
    sources: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_changes(cls, changes: Any, source_paths: dict[str, str | os.PathLike[str]],
                     meta: dict[str, Any] | None = None) -> LoggfCalibration:
        """A calibration of the given source files (their SHA-256 is recorded).

        Parameters
        ----------
        changes : astropy.table.Table
            The changes (columns as in the class description).
        source_paths : dict of str to path-like
            Each source list the ``list`` column names.
        meta : dict, optional
            How the calibration was made.

        Returns
        -------
        LoggfCalibration
        """
        return cls(changes, {k: _sha256(Path(p)) for k, p in source_paths.items()}, meta or {})

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the table and its metadata as ECSV."""
        t = self.changes.copy()
        t.meta = {"sources": dict(self.sources), **self.meta}
        t.write(path, format="ascii.ecsv", overwrite=True)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> LoggfCalibration:
        """Read an ECSV file written by `write`."""
        from astropy.table import Table

        t = Table.read(path, format="ascii.ecsv")
        meta = dict(t.meta)
        sources = dict(meta.pop("sources"))
        t.meta = {}
        return cls(t, sources, meta)

    def apply(self, name: str, source: str | os.PathLike[str],
              destination: str | os.PathLike[str]) -> int:
        """Write ``source`` with the calibrated log gf of list ``name`` to ``destination``.

        Only the log gf field of the changed records is rewritten (the rest of each record,
        e.g. NLTE level labels, is kept).

        Parameters
        ----------
        name : str
            Which source list this is (a key of ``sources``).
        source, destination : path-like
            The laboratory list and the file to write.

        Returns
        -------
        int
            Number of records changed.

        Raises
        ------
        ValueError
            If ``source`` is not the file the calibration was made for (SHA-256), or a record
            does not hold the expected line.
        """
        src = Path(source)
        if name not in self.sources:
            raise ValueError(f"the calibration has no source list {name!r}")
        if _sha256(src) != self.sources[name]:
            raise ValueError(f"{src} is not the {name!r} list the calibration was made for "
                             "(SHA-256 differs)")
        text, where = _record_lines(src)
        rows = self.changes[self.changes["list"] == name]
        for row in rows:
            k = int(row["record"])
            if k >= where.size:
                raise ValueError(f"{name}: record {k} does not exist")
            line = text[where[k]]
            nums, sep, labels = line.partition("'")
            parts = nums.split()
            if (abs(float(parts[0]) - float(row["wavelength"])) > 5e-4
                    or abs(float(parts[2]) - float(row["loggf_lab"])) > 5e-4):
                raise ValueError(f"{name}: record {k} is {parts[0]} A log gf {parts[2]}, "
                                 f"expected {row['wavelength']} A log gf {row['loggf_lab']}")
            parts[2] = f"{float(row['loggf_lab']) + float(row['delta']):.3f}"
            text[where[k]] = "  " + " ".join(parts) + (" " + sep + labels if sep else "")
        Path(destination).write_text("\n".join(text) + "\n")
        return len(rows)


def calibrated_line_lists(install: Any, calibration: str | os.PathLike[str] | LoggfCalibration,
                          directory: str | os.PathLike[str], *,
                          exclude: tuple[str, ...] = ("sih",)) -> list[Path]:
    """The install's default line lists with calibrated copies of the lists a calibration covers.

    Parameters
    ----------
    install : SynthesisInstall
        The synthesis install (its Gaia-ESO list, ``Hlinedata`` and extended lists).
    calibration : path-like or LoggfCalibration
        The calibration (an ECSV file written by `LoggfCalibration.write`).
    directory : path-like
        Where the calibrated copies are written (reused if already there and identical).
    exclude : tuple of str
        Extended-list families left out (SiH, as in the grid configuration).

    Returns
    -------
    list of pathlib.Path
        Line lists for `~specutils_cinn.synthesis.synthesize`, in the install's order.
    """
    cal = calibration if isinstance(calibration, LoggfCalibration) else LoggfCalibration.read(
        calibration)
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {Path(install.ges_linelist): "ges"}
    names.update({Path(p): fam for fam, p in install.extended_linelists.items()})
    out = []
    for p in install.default_line_lists:
        name = names.get(Path(p))
        if name in exclude:
            continue
        if name in cal.sources:
            dst = out_dir / f"{name}_solar_loggf.ts"
            cal.apply(name, p, dst)
            out.append(dst)
        else:
            out.append(Path(p))
    return out
