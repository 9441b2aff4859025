"""Choosing the torch device that inference and training run on, leaving torch's
process-wide settings as they were, and naming the CPU (`cpu_name`)."""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["cpu_name", "has_bfloat16_hardware", "resolve_device", "restore_torch_threads"]

#: CPU flags (``/proc/cpuinfo``) of native bfloat16 matrix arithmetic.
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

#: Where Linux describes the CPUs (model name, flags).
_CPUINFO = "/proc/cpuinfo"

_F = TypeVar("_F", bound=Callable[..., Any])


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a device request into a `torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}, `torch.device` or None
        ``"auto"`` (or None) picks the first CUDA GPU when one is available and the CPU
        otherwise. ``"cuda"`` or ``"cuda:N"`` requires a working CUDA device.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the string is not a device torch knows, or CUDA is requested but not available.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was requested but torch sees no CUDA device "
            f"(torch {torch.__version__}); use device='cpu' or 'auto'"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device type {dev.type!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    return dev


def has_bfloat16_hardware(device: str | torch.device) -> bool:
    """Whether ``device`` does bfloat16 matrix products natively (faster than float32).

    A CUDA device with native bfloat16 (``torch.cuda.is_bf16_supported(including_emulation=
    False)``: Ampere and later), or a
    CPU whose ``/proc/cpuinfo`` flags include one of `BFLOAT16_CPU_FLAGS` (Intel AMX or
    AVX-512 BF16). Elsewhere torch emulates bfloat16, more slowly than float32.

    Parameters
    ----------
    device : str or `torch.device`
        As `resolve_device` takes it.

    Returns
    -------
    bool
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    try:
        with open(_CPUINFO, encoding="ascii", errors="replace") as fh:
            flags = {f for line in fh if line.startswith("flags") for f in line.split()}
    except OSError:
        return False
    return any(f in flags for f in BFLOAT16_CPU_FLAGS)


def cpu_name() -> str:
    """The CPU's model name, as benchmarks and reports name the machine they ran on.

    The first ``model name`` line of ``/proc/cpuinfo`` (Linux), e.g. ``"AMD EPYC 7B13"``.
    Where that file or line is missing or empty (macOS, Windows, many ARM machines),
    ``platform.processor()``, else ``platform.machine()`` (``"x86_64"``, ``"arm64"``), else
    ``"unknown CPU"``. The number of cores is not part of it: callers add ``os.cpu_count()``
    (or the cores they may use) in their own words.

    Returns
    -------
    str

    Examples
    --------
    >>> from specutils_cinn.devices import cpu_name
    >>> isinstance(cpu_name(), str) and cpu_name() != ""
    True
    """
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.partition(":")[2].strip()
                    if name:
                        return name
                    break
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def restore_torch_threads(function: _F) -> _F:
    """Decorate a function that may call `torch.set_num_threads` so that the caller's number
    of threads is restored when it returns or raises.

    Training functions take a ``threads`` option; a library function must not leave the
    process running on that number afterwards.

    Parameters
    ----------
    function : callable

    Returns
    -------
    callable
        The same function, restoring ``torch.get_num_threads()`` on exit.

    Examples
    --------
    >>> import torch
    >>> from specutils_cinn.devices import restore_torch_threads
    >>> @restore_torch_threads
    ... def work():
    ...     torch.set_num_threads(1)
    >>> before = torch.get_num_threads()
    >>> work()
    >>> torch.get_num_threads() == before
    True
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        threads = torch.get_num_threads()
        try:
            return function(*args, **kwargs)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    return wrapper  # type: ignore[return-value]
