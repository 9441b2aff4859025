"""Private helpers shared by the instrument modules: input checking and batched resampling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from astropy import units as u

KM_S = u.km / u.s

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


def as_wave(wave: Any, name: str = "wave") -> np.ndarray:
    """Return ``wave`` as a 1-D, strictly increasing, positive float64 array in Angstrom."""
    if isinstance(wave, u.Quantity):
        try:
            wave = wave.to_value(u.AA, equivalencies=u.spectral())
        except u.UnitConversionError as exc:
            raise ValueError(f"{name} must have a spectral unit, got {wave.unit}") from exc
    elif isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    try:
        arr = np.asarray(wave, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a 1-D array of wavelengths, got {type(wave).__name__}"
        ) from exc
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"{name} must be 1-D with at least 2 values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr[0] <= 0:
        raise ValueError(f"{name} must be finite and positive")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be strictly increasing")
    return arr


def as_flux(
    flux: Any, npix: int | None = None, name: str = "flux", *, finite: bool = False
) -> tuple[torch.Tensor, bool, bool]:
    """Return ``(tensor [B, M], was_numpy, was_1d)`` for a float32/float64 flux array or tensor.

    With ``finite``, NaN or infinite values raise a ValueError.
    """
    if isinstance(flux, torch.Tensor):
        t = flux
        was_numpy = False
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name} must be a float32 or float64 tensor, got {t.dtype}")
    else:
        if isinstance(flux, u.Quantity):
            flux = flux.value
        try:
            arr = np.asarray(flux)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be an array or tensor, got {type(flux).__name__}"
            ) from exc
        if arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
        elif arr.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
        was_numpy = True
    was_1d = t.ndim == 1
    if was_1d:
        t = t.unsqueeze(0)
    if t.ndim != 2:
        raise ValueError(
            f"{name} must have shape [n_spectra, npix] or [npix], got {tuple(t.shape)}"
        )
    if npix is not None and t.shape[1] != npix:
        raise ValueError(f"{name} has {t.shape[1]} pixels but the wavelength array has {npix}")
    if finite and not bool(torch.isfinite(t).all()):
        raise ValueError(
            f"{name} contains NaN or infinite values; fill masked pixels before broadening"
        )
    return t, was_numpy, was_1d


def restore(t: torch.Tensor, was_numpy: bool, was_1d: bool) -> Any:
    """Undo `as_flux`: drop the batch axis of 1-D input and go back to numpy for numpy input."""
    if was_1d:
        t = t[0]
    if was_numpy:
        return t.detach().cpu().numpy()
    return t


def interp_matrix(x_new: np.ndarray, x: np.ndarray, *, extrapolate: bool = False) -> sp.csr_matrix:
    """Sparse ``[len(x_new), len(x)]`` matrix of linear interpolation from ``x`` to ``x_new``.

    Points outside ``x`` take the nearest end value, or are extrapolated linearly from the two
    end samples if ``extrapolate``.
    """
    idx = np.clip(np.searchsorted(x, x_new, side="right") - 1, 0, x.size - 2)
    w = (x_new - x[idx]) / (x[idx + 1] - x[idx])
    if not extrapolate:
        w = np.clip(w, 0.0, 1.0)
    rows = np.arange(x_new.size)
    return sp.csr_matrix(
        (np.concatenate([1.0 - w, w]), (np.tile(rows, 2), np.concatenate([idx, idx + 1]))),
        shape=(x_new.size, x.size),
    )


def bin_matrix(w: np.ndarray, e: np.ndarray) -> sp.csr_matrix:
    """Sparse ``[len(e) - 1, len(w)]`` matrix averaging the piecewise-linear interpolant over bins.

    Row ``k`` holds the weights of the exact mean over ``[e[k], e[k + 1]]`` of the function that
    is linear between the samples at ``w`` (linearly extrapolated if an edge lies just outside).
    """
    inner = w[(w > e[0]) & (w < e[-1])]
    pts = np.union1d(inner, e)
    a, b = pts[:-1], pts[1:]
    mid = 0.5 * (a + b)
    i = np.clip(np.searchsorted(w, mid, side="right") - 1, 0, w.size - 2)
    k = np.clip(np.searchsorted(e, mid, side="right") - 1, 0, e.size - 2)
    h = w[i + 1] - w[i]
    lo, hi = (a - w[i]) / h, (b - w[i]) / h
    second = 0.5 * h * (hi * hi - lo * lo)
    first = h * (hi - lo) - second
    width = np.diff(e)[k]
    return sp.csr_matrix(
        (
            np.concatenate([first / width, second / width]),
            (np.tile(k, 2), np.concatenate([i, i + 1])),
        ),
        shape=(e.size - 1, w.size),
    )


def apply_rows(
    matrix: sp.csr_matrix, f: torch.Tensor, *, use_scipy: bool | None = None
) -> torch.Tensor:
    """Apply a sparse linear map to every row of ``f``: ``f @ matrix.T`` (not differentiable).

    CPU tensors go through scipy (fast and warning-free); other devices through
    `torch.sparse.mm`. ``use_scipy`` forces the path (for tests).
    """
    if use_scipy is None:
        use_scipy = f.device.type == "cpu"
    np_dtype = np.float32 if f.dtype == torch.float32 else np.float64
    if use_scipy:
        arr = f.detach().cpu().numpy()
        out = np.ascontiguousarray(arr @ matrix.T.astype(np_dtype))
        return torch.from_numpy(out).to(f.device)
    coo = matrix.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)).to(f.device)
    values = torch.from_numpy(coo.data.astype(np_dtype)).to(f.device)
    mat = torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=True)
    return torch.sparse.mm(mat, f.detach().T).T.contiguous()


def interp_rows(
    x_new: np.ndarray, x: np.ndarray, f: torch.Tensor, *, extrapolate: bool = False
) -> torch.Tensor:
    """Linearly interpolate the rows of ``f`` (sampled at the shared ``x``) at ``x_new``."""
    return apply_rows(interp_matrix(x_new, x, extrapolate=extrapolate), f)


def bin_average_rows(w: np.ndarray, f: torch.Tensor, e: np.ndarray) -> torch.Tensor:
    """Mean of the piecewise-linear interpolant of each row of ``f`` over the bins ``e``."""
    return apply_rows(bin_matrix(w, e), f)


def make_generator(
    generator: Any, device: torch.device | str | None = None
) -> torch.Generator | None:
    """Accept ``None``, an integer seed or a `torch.Generator`."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int | np.integer) and not isinstance(generator, bool):
        g = torch.Generator(device=device if device is not None else "cpu")
        g.manual_seed(int(generator))
        return g
    raise TypeError(
        f"generator must be None, an int seed or a torch.Generator, got {type(generator).__name__}"
    )
