"""The output of a survey run: checks, the parts folder, its manifest and lock, assembly.

`check_output` checks the output before any work; each chunk is written as a part file
``part-NNNNNNN<suffix>`` into `parts_folder` (atomically, with a side file of its row and
error counts), under a manifest recording the job (``manifest.json``, `MANIFEST_VERSION`) and
a lock against a second run; `_assemble_output` streams the parts into the output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import QTable, Table

from ..results import write_table
from .plan import SurveyInput, _Job

__all__ = [
    "MANIFEST_VERSION",
    "OUTPUT_FORMATS",
    "check_output",
    "parts_folder",
]

#: Output suffixes and the astropy table format each is written in.
OUTPUT_FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".ecsv": "ascii.ecsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: Version of the ``manifest.json`` layout.
MANIFEST_VERSION = 1


# ----------------------------------------------------------------------------- output checks
def _output_format(output: Path) -> str:
    name = output.name.lower()
    for suffix, fmt in OUTPUT_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise ValueError(
        f"cannot tell the table format from the suffix of {str(output)!r}: use "
        + ", ".join(sorted(OUTPUT_FORMATS)) + " (FITS, ECSV or Parquet)"
    )


def _suffix(output: Path) -> str:
    name = output.name.lower()
    return next(s for s in OUTPUT_FORMATS if name.endswith(s))


def parts_folder(output: str | os.PathLike) -> Path:
    """The folder holding the part files and manifest of a run writing ``output``.

    Parameters
    ----------
    output : path-like
        The output table.

    Returns
    -------
    pathlib.Path
        ``<output>.parts`` beside the output.
    """
    p = Path(output)
    return p.with_name(p.name + ".parts")


def check_output(output: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Check that a survey's output can be written, before any work is done.

    Parameters
    ----------
    output : path-like
        The output table; its suffix chooses the format (`OUTPUT_FORMATS`).
    overwrite : bool, optional
        Whether an existing output file may be replaced.

    Returns
    -------
    str
        The astropy table format (``"fits"``, ``"ascii.ecsv"`` or ``"parquet"``).

    Raises
    ------
    ValueError
        If the suffix is not one of `OUTPUT_FORMATS`, or Parquet is asked for without
        ``pyarrow`` installed.
    OSError
        If the output is a folder, exists and ``overwrite`` is false, or its folder does not
        exist or is not writable.
    """
    p = Path(output).expanduser()
    if p.is_dir():
        raise IsADirectoryError(f"output {str(p)!r} is a directory; name a file")
    fmt = _output_format(p)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ValueError(
                "a .parquet output needs pyarrow: pip install 'specutils-cinn[parquet]'"
            ) from exc
    if p.is_dir():
        raise IsADirectoryError(f"output {str(p)!r} is a directory; name a file")
    if p.exists() and not overwrite:
        raise FileExistsError(
            f"output {str(p)!r} exists; pass --overwrite (overwrite=True) to replace it"
        )
    parent = p.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {str(parent)!r} is not writable")
    return fmt


# ----------------------------------------------------------------------------- parts folder
def _fingerprint(units: Sequence[SurveyInput], job: _Job, model_id: str,
                 fmt: str) -> dict[str, Any]:
    h = hashlib.sha256()
    for unit in units:
        h.update("\x1f".join(unit.paths).encode("utf-8", "surrogateescape"))
        h.update(b"\x1e" + repr(unit.rv).encode() + b"\x1d")
    settings = asdict(job)
    settings.pop("batch_size")
    settings.pop("meta")
    settings["quantiles"] = list(job.quantiles)
    settings["velocity_range"] = list(job.velocity_range)
    settings["snr"] = None if job.snr is None else (
        job.snr if isinstance(job.snr, str) else np.asarray(job.snr, float).tolist())
    if isinstance(settings["rv_arg"], np.ndarray):
        settings["rv_arg"] = "per input (in the inputs digest)"
    return {
        "inputs": len(units),
        "inputs_sha256": h.hexdigest(),
        "model": model_id,
        "format": fmt,
        "settings": json.loads(json.dumps(settings, default=str)),
    }


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    lock = folder / "lock"
    me = f"{socket.gethostname()} {os.getpid()}"
    try:
        host, pid = lock.read_text().split()
        if host == socket.gethostname() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            raise OSError(f"another run (process {pid}) is writing {str(folder)!r}")
    except (FileNotFoundError, ValueError):
        pass
    _atomic_write_text(lock, me)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text() == me:
                lock.unlink()


def _open_parts(folder: Path, fingerprint: dict[str, Any], n_chunks: int, seed: int,
                suffix: str) -> tuple[int, set[int]]:
    """Check or write the manifest; return the job seed and the finished chunks."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old.get("version") != MANIFEST_VERSION:
            raise ValueError(f"{str(manifest)!r} has another layout; remove the folder or "
                             "pass --restart (resume=False)")
        theirs, mine = dict(old["fingerprint"]), dict(fingerprint)
        ts, ms = dict(theirs.pop("settings")), dict(mine.pop("settings"))
        if ms.get("seed") is None:  # no seed given: the recorded one
            ms["seed"] = ts.get("seed")
        diff = sorted({k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k)}
                      | {k for k in set(ts) | set(ms) if ts.get(k) != ms.get(k)})
        if diff:
            raise ValueError(
                f"{str(folder)!r} holds parts of another job (it differs in: "
                f"{', '.join(diff)}); pass --restart (resume=False) to discard them, or "
                "write to another output"
            )
        seed = int(old["seed"])
    else:
        for p in folder.iterdir():  # stale parts without a manifest: not ours to trust
            if p.name.startswith("part-"):
                p.unlink()
        fp = json.loads(json.dumps(fingerprint))
        fp["settings"]["seed"] = seed
        _atomic_write_text(manifest, json.dumps(
            {"version": MANIFEST_VERSION, "fingerprint": fp, "seed": seed, "chunks": n_chunks,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
    for p in folder.glob(".part-*"):  # temporaries of a killed writer
        p.unlink()
    done = set()
    for p in folder.glob("part-*"):
        m = re.fullmatch(r"part-(\d+)" + re.escape(suffix), p.name)
        if m:
            done.add(int(m.group(1)))
    return seed, {k for k in done if k < n_chunks}


def _part_path(folder: Path, index: int, suffix: str) -> Path:
    return folder / f"part-{index:07d}{suffix}"


def _write_part(table: QTable, path: Path, fmt: str) -> None:
    """Write a part atomically; its side file (rows, errors) first, the part's rename last."""
    stats = {"rows": len(table), "errors": int(np.sum(np.asarray(table["status"]) != "ok"))}
    _atomic_write_text(path.with_name(path.name.split(".")[0] + ".json"), json.dumps(stats))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}{path.suffix}")
    # FITS: no warning per dex column, their units in the TTYPEn comments (results.write_table)
    write_table(table, tmp, format=fmt, overwrite=True)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- assembly
def _assemble_output(parts: list[Path], output: Path, fmt: str) -> int:
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        if fmt == "ascii.ecsv":
            n = _concat_ecsv(parts, tmp)
        elif fmt == "parquet":
            n = _concat_parquet(parts, tmp)
        else:
            n = _concat_fits(parts, tmp)
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return n


def _concat_ecsv(parts: list[Path], out: Path) -> int:
    n = 0
    names_line = None
    with open(out, "w", encoding="utf-8", newline="") as dst:
        for k, part in enumerate(parts):
            with open(part, encoding="utf-8", newline="") as src:
                header = True
                for line in src:
                    if header:
                        if line.startswith("#"):
                            if k == 0:
                                dst.write(line)
                            continue
                        header = False
                        if names_line is None:
                            names_line = line
                            dst.write(line)
                        elif line != names_line:
                            raise ValueError(f"part {part.name} has other columns than the first")
                        continue
                    dst.write(line)
                    n += 1
    return n


def _concat_parquet(parts: list[Path], out: Path) -> int:
    import pyarrow.parquet as pq

    schema = pq.read_schema(parts[0])
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        for part in parts:
            t = pq.read_table(part)
            writer.write_table(t.cast(schema))
            n += t.num_rows
    return n


def _concat_fits(parts: list[Path], out: Path) -> int:
    """Binary tables with identical columns (fixed string widths): headers and bytes copied."""
    from astropy.io import fits

    header = None
    total = sum(int(fits.getheader(p, 1)["NAXIS2"]) for p in parts)
    written = 0
    with open(out, "wb") as dst:
        for part in parts:
            with fits.open(part, memmap=False, lazy_load_hdus=True) as hdul:
                h = hdul[1].header
                loc = hdul.fileinfo(1)["datLoc"]
                primary = hdul[0].header
                if header is None:
                    header = h.copy()
                    header["NAXIS2"] = total
                    dst.write(primary.tostring().encode("ascii"))
                    dst.write(header.tostring().encode("ascii"))
                else:
                    for key in ("NAXIS1", "TFIELDS", *(f"TFORM{i}" for i in
                                                       range(1, int(h["TFIELDS"]) + 1))):
                        if h.get(key) != header.get(key):
                            raise ValueError(f"part {part.name} has other columns than the "
                                             f"first ({key})")
                nbytes = int(h["NAXIS1"]) * int(h["NAXIS2"])
            with open(part, "rb") as src:
                src.seek(loc)
                while nbytes > 0:
                    block = src.read(min(nbytes, 1 << 24))
                    if not block:
                        raise OSError(f"part {part.name} is truncated")
                    dst.write(block)
                    nbytes -= len(block)
            written += int(h["NAXIS2"])
        dst.write(b"\0" * ((-dst.tell()) % 2880))
    if written != total:
        raise OSError("the parts changed while they were assembled")
    return total


def _part_stats(part: Path, fmt: str) -> dict[str, int]:
    """Rows and error rows of a part, from its side file (or the part itself)."""
    side = part.with_name(part.name.split(".")[0] + ".json")
    with contextlib.suppress(OSError, ValueError, KeyError):
        stats = json.loads(side.read_text())
        return {"rows": int(stats["rows"]), "errors": int(stats["errors"])}
    if fmt == "parquet":
        import pyarrow.parquet as pq

        col = pq.read_table(part, columns=["status"]).column("status").to_pylist()
    else:
        col = Table.read(part, format=fmt)["status"]
    return {"rows": len(col), "errors": int(sum(1 for s in col if str(s) != "ok"))}
