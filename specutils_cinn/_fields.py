"""Checks of the fields of JSON metadata: numbers, pairs and JSON-safe copies.

Shared by the model metadata (`specutils_cinn.model`) and the model's emulator
(`specutils_cinn.fit_check`). Every invalid field raises the `ValueError` of `field_error`,
whose message names the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_float", "as_pair", "field_error", "json_copy"]


def field_error(field_name: str, problem: str) -> ValueError:
    """The error of an invalid metadata field (returned, to be raised by the caller).

    Parameters
    ----------
    field_name : str
        The field, e.g. ``"emulator.chi2_threshold"``.
    problem : str
        What is wrong with it.

    Returns
    -------
    ValueError
        With the message ``model metadata field '<field_name>': <problem>``.
    """
    return ValueError(f"model metadata field '{field_name}': {problem}")


def as_float(value: Any, field_name: str) -> float:
    """A finite number as a float.

    Parameters
    ----------
    value : object
        An int or float (Python or numpy); not a bool.
    field_name : str
        The field, for the error message.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``value`` is not a finite number.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise field_error(field_name, f"expected a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise field_error(field_name, f"expected a finite number, got {value!r}")
    return out


def as_pair(value: Any, field_name: str) -> tuple[float, float]:
    """A pair ``[low, high]`` of finite numbers with ``low <= high``.

    Parameters
    ----------
    value : object
        A sequence (or array) of two numbers.
    field_name : str
        The field, for the error message.

    Returns
    -------
    tuple of float
        ``(low, high)``.

    Raises
    ------
    ValueError
        If ``value`` is not such a pair.
    """
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise field_error(field_name, f"expected [low, high], got {value!r}")
    lo = as_float(value[0], f"{field_name}[0]")
    hi = as_float(value[1], f"{field_name}[1]")
    if not lo <= hi:
        raise field_error(field_name, f"need low <= high, got {value!r}")
    return lo, hi


def json_copy(value: Any, field_name: str) -> Any:
    """Deep copy through JSON, so that the value is known to be JSON-serializable.

    Parameters
    ----------
    value : object
        Anything `json.dumps` accepts without NaN or infinity.
    field_name : str
        The field, for the error message.

    Returns
    -------
    object
        ``json.loads(json.dumps(value))``: tuples become lists, mapping keys strings.

    Raises
    ------
    ValueError
        If ``value`` is not JSON-serializable.
    """
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise field_error(field_name, f"not JSON-serializable ({exc})") from exc
