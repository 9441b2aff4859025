"""Hashes: SHA-256 of files, and fast, stable 64-bit hashes of spectra.

`sha256_file` is the one SHA-256 of a file in the package (model, emulator and registry files,
line lists, synthesis installs); `is_sha256` tells whether a value is such a digest.

`hash_rows`, `hash_text` and `splitmix64` give the per-spectrum random streams. They are not
cryptographic: two different spectra sharing a hash only share their random draws. The
values are the same on every platform, Python process and numpy version (no ``hash()``,
whose strings are salted per process).
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["hash_rows", "hash_text", "is_sha256", "sha256_file", "splitmix64"]

_U64 = np.uint64
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
#: Bytes read at a time by `sha256_file`.
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 hex digest (lower case) of a file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to hash.

    Returns
    -------
    str
        64 lower-case hexadecimal digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def is_sha256(value: Any) -> bool:
    """Whether a value is a SHA-256 hex digest as this package writes them.

    Parameters
    ----------
    value : object
        Anything.

    Returns
    -------
    bool
        True for a string of 64 lower-case hexadecimal digits.
    """
    return isinstance(value, str) and _SHA256_RE.match(value) is not None


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer (Steele, Lea & Flood 2014) of each element: a bijection of
    uint64 with good avalanche, used to mix hashes and seeds.

    Parameters
    ----------
    x : numpy.ndarray
        Unsigned 64-bit integers (any shape); arithmetic wraps modulo 2**64.

    Returns
    -------
    numpy.ndarray
        Same shape, uint64.
    """
    a = np.asarray(x, dtype=_U64)
    shape = a.shape
    x = a.reshape(-1) + _U64(0x9E3779B97F4A7C15)  # 1-D: numpy warns on scalar overflow only
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return (x ^ (x >> _U64(31))).reshape(shape)


@lru_cache(maxsize=64)
def _column_keys(m: int, salt: int) -> np.ndarray:
    keys = splitmix64(np.arange(m, dtype=_U64) + _U64(salt)) | _U64(1)
    keys.setflags(write=False)
    return keys


def hash_rows(values: np.ndarray, salt: int, chunk_elements: int = 1 << 20) -> np.ndarray:
    """A 64-bit hash of each row of a 2-D array of numbers or booleans.

    The values are taken as float64 with -0.0 as 0.0 and every NaN as the same NaN, so the
    hash depends on the values, not on their dtype (float32 or float64 of the same numbers,
    booleans as 0 and 1) or memory layout. Each column has its own odd multiplier; the
    products are summed modulo 2**64 and mixed with `splitmix64`.

    Parameters
    ----------
    values : numpy.ndarray
        Shape ``(N, M)``.
    salt : int
        Distinguishes hashes of different kinds of data (flux, uncertainty, mask, axis).
    chunk_elements : int, optional
        Rows are processed in blocks of about this many elements.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, uint64.
    """
    a = np.asarray(values)
    n, m = a.shape
    keys = _column_keys(m, salt)
    out = np.empty(n, dtype=_U64)
    step = max(1, chunk_elements // max(m, 1))
    for r0 in range(0, n, step):
        x = a[r0 : r0 + step].astype(np.float64)  # a copy: edited in place below
        x[x == 0] = 0.0
        x[np.isnan(x)] = np.nan
        bits = x.view(_U64)
        out[r0 : r0 + step] = (bits * keys).sum(axis=1, dtype=_U64)
    return splitmix64(out ^ _U64(m))


def hash_text(text: str) -> np.uint64:
    """A stable 64-bit hash of a string (BLAKE2b)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return np.frombuffer(digest, dtype="<u8")[0].astype(_U64)
