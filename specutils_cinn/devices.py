"""Choosing the torch device that inference and training run on."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


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
