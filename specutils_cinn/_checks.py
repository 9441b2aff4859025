"""Checks of arguments shared by the estimator, the survey runner, the command line, the
instrument models and the emulator.

Each check raises a `ValueError` (or `TypeError`) naming the argument, so that callers can
check their arguments before any work.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from astropy import units as u

__all__ = [
    "MAX_SEED",
    "check_batch_size",
    "check_n_samples",
    "check_quantiles",
    "check_seed",
    "is_int",
    "per_spectrum",
]

#: Largest accepted ``seed`` (it is stored in ``table.meta["SEED"]``, a FITS integer).
MAX_SEED = 2**63 - 1


def is_int(x: Any) -> bool:
    """Whether ``x`` is an integer (Python or numpy), not a bool.

    Parameters
    ----------
    x : object
        Anything.

    Returns
    -------
    bool
    """
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def check_n_samples(n_samples: Any) -> None:
    """Check a number of posterior draws per spectrum.

    Parameters
    ----------
    n_samples : object
        Must be an integer >= 2.

    Raises
    ------
    ValueError
        If it is not.
    """
    if not is_int(n_samples) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")


def check_batch_size(batch_size: Any) -> None:
    """Check a batch size.

    Parameters
    ----------
    batch_size : object
        Must be a positive integer or None.

    Raises
    ------
    ValueError
        If it is not.
    """
    if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")


def check_seed(seed: Any) -> int:
    """The seed as an int (a fresh random one for None).

    Parameters
    ----------
    seed : int or None
        An integer from 0 to `MAX_SEED`, or None.

    Returns
    -------
    int
        ``seed``, or 32 random bits for None.

    Raises
    ------
    ValueError
        If ``seed`` is neither None nor such an integer.
    """
    if seed is None:
        return secrets.randbits(32)
    if not is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise ValueError(
            f"seed must be an integer from 0 to 2**63 - 1 (or None for a random one), "
            f"got {seed!r}"
        )
    return int(seed)


def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """Quantile levels as a tuple of floats, each in (0, 1).

    Parameters
    ----------
    quantiles : float or sequence of float
        One level or several.

    Returns
    -------
    tuple of float

    Raises
    ------
    ValueError
        If there is no level, or one is not a number in (0, 1).
    """
    try:
        levels = tuple(float(q) for q in np.atleast_1d(np.asarray(quantiles, dtype=float)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"quantiles must be numbers in (0, 1), got {quantiles!r}") from exc
    if not levels or not all(0.0 < q < 1.0 for q in levels):
        raise ValueError(f"quantiles must be numbers in (0, 1), got {quantiles!r}")
    return levels


def per_spectrum(
    values: Any, n: int, name: str, *, allow_zero: bool = True, unit: u.UnitBase | None = None
) -> np.ndarray:
    """Broadcast a scalar or length-``n`` array of finite non-negative values to float64 ``[n]``.

    A Quantity is converted to ``unit`` (dimensionless if ``unit`` is None).

    Parameters
    ----------
    values : float, array-like, `~astropy.units.Quantity` or `torch.Tensor`
        One value for every spectrum, or one per spectrum.
    n : int
        Number of spectra.
    name : str
        The argument's name, for the error message.
    allow_zero : bool, optional
        Whether 0 is accepted.
    unit : `~astropy.units.UnitBase`, optional
        Unit a Quantity is converted to.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``, float64.

    Raises
    ------
    ValueError
        If a value is not finite, negative (or zero without ``allow_zero``), in a unit that
        does not convert, or the shape is neither scalar nor ``(n,)``.
    TypeError
        If ``values`` is not numeric.
    """
    if isinstance(values, u.Quantity):
        target = u.dimensionless_unscaled if unit is None else unit
        try:
            values = values.to_value(target)
        except u.UnitConversionError as exc:
            raise ValueError(f"{name} must be in units of {target}, got {values.unit}") from exc
    elif isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number or an array of numbers") from exc
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (not allow_zero and np.any(arr == 0)):
        need = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {need}")
    return arr
