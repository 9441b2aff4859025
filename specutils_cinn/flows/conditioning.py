"""Spectrum encoding and the conditioning network (spectrum -> feature vector)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

__all__ = [
    "CNN_KERNELS",
    "CNN_STRIDES",
    "FLUX_FILL",
    "LOG_SIGMA_FILL",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "SpectrumConditioner",
    "encode_inputs",
]

#: Lower clip of the uncertainties before taking the logarithm (normalized flux units).
SIGMA_MIN = 1e-4
#: Upper clip of the uncertainties before taking the logarithm (normalized flux units).
SIGMA_MAX = 10.0
#: Value of the flux channel (``flux - 1``) at invalid pixels: the continuum level.
FLUX_FILL = 0.0
#: Value of the log-sigma channel at invalid pixels: ``log(SIGMA_MAX)``, i.e. maximally noisy.
LOG_SIGMA_FILL = math.log(SIGMA_MAX)
#: Kernel sizes of the successive convolutions of the ``"cnn"`` conditioner.
CNN_KERNELS = (9, 5, 5, 3, 3, 3)
#: Strides of the successive convolutions of the ``"cnn"`` conditioner.
CNN_STRIDES = (4, 4, 4, 2, 2, 2)

ConditionerKind = Literal["cnn", "mlp"]


def _as_tensor(a: ArrayLike | Tensor, dtype: torch.dtype | None, device: Any) -> Tensor:
    if isinstance(a, Tensor):
        return a.to(device=device, dtype=dtype)
    arr = np.asarray(a)
    if not arr.flags.writeable:  # torch warns about non-writable arrays
        arr = arr.copy()
    return torch.from_numpy(arr).to(device=device, dtype=dtype)


def encode_inputs(
    flux: ArrayLike | Tensor,
    sigma: ArrayLike | Tensor,
    valid: ArrayLike | Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Encode continuum-normalized spectra as the three-channel network input.

    ======= ============================================ =============================
    channel valid pixel                                  invalid pixel
    ======= ============================================ =============================
    0       ``flux - 1``                                 ``FLUX_FILL`` (0)
    1       ``log(clip(sigma, SIGMA_MIN, SIGMA_MAX))``   ``LOG_SIGMA_FILL`` (log 10)
    2       1                                            0
    ======= ============================================ =============================

    A pixel counts as valid only if ``valid`` is true *and* its flux and sigma are finite
    and ``sigma > 0``.  Invalid pixels thus look like "continuum level, maximal noise" and
    are always flagged by channel 2; their flux and sigma values never reach the network.

    Parameters
    ----------
    flux : array-like or torch.Tensor
        Normalized flux, shape ``[B, npix]`` (or ``[npix]`` for one spectrum).
    sigma : array-like or torch.Tensor
        Flux uncertainties (standard deviations), same shape.
    valid : array-like or torch.Tensor
        Boolean pixel mask (true = usable), same shape.
    dtype : torch.dtype, optional
        Floating dtype of the result.
    device : torch.device or str, optional
        Device of the result; default: that of ``flux`` if it is a tensor, else CPU.

    Returns
    -------
    torch.Tensor
        Shape ``[B, 3, npix]``.

    Raises
    ------
    TypeError
        If ``valid`` is not boolean or ``dtype`` is not floating.
    ValueError
        If the shapes differ or are not 1-D/2-D.
    """
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    if device is None and isinstance(flux, Tensor):
        device = flux.device
    f = _as_tensor(flux, dtype, device)
    s = _as_tensor(sigma, dtype, device)
    v = _as_tensor(valid, None, device)
    if v.dtype != torch.bool:
        raise TypeError(f"valid must be a boolean array, got dtype {v.dtype}")
    if not (f.shape == s.shape == v.shape) or f.ndim not in (1, 2):
        raise ValueError(
            "flux, sigma and valid must share a [B, npix] or [npix] shape, got "
            f"{tuple(f.shape)}, {tuple(s.shape)}, {tuple(v.shape)}"
        )
    if f.ndim == 1:
        f, s, v = f.unsqueeze(0), s.unsqueeze(0), v.unsqueeze(0)
    ok = v & torch.isfinite(f) & torch.isfinite(s) & (s > 0)
    flux_ch = torch.where(ok, f - 1.0, FLUX_FILL)
    log_sigma = torch.where(ok, torch.log(s.clamp(SIGMA_MIN, SIGMA_MAX)), LOG_SIGMA_FILL)
    return torch.stack([flux_ch, log_sigma, ok.to(dtype)], dim=1)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class SpectrumConditioner(nn.Module):
    """Conditioning network: encoded spectra ``[B, 3, npix]`` to features ``[B, features]``.

    ``kind="cnn"`` (the production network) is a cheap strided 1-D CNN::

        Conv1d(3, channels[0], 9, stride=4) -> GELU -> Conv1d(channels[0], channels[1], 5,
        stride=4) -> GELU -> ... -> AdaptiveAvgPool1d(pool) -> Flatten
        -> Linear(channels[-1] * pool, hidden) -> GELU -> Linear(hidden, features)

    with kernel sizes ``CNN_KERNELS``, strides ``CNN_STRIDES`` and "same" padding
    (``kernel // 2``).  With the defaults it costs about 18 MFLOP per 17 000-pixel spectrum.
    ``kind="mlp"`` flattens the input and applies ``Linear(3 * npix, hidden) -> GELU ->
    Linear(hidden, hidden) -> GELU -> Linear(hidden, features)``; meant for tiny test problems
    (``channels`` and ``pool`` are then unused but still recorded in `config`).

    **Line windows.** The strided convolutions summarize each few Angstrom in a few dozen
    channels shared by the whole spectrum, and a weak line among stronger ones is lost there
    (the v2 HR model's features held no [Mn/Fe] or [Ni/Fe] information although the spectra
    do; docs/training.rst, "Line windows"). With ``line_pixels`` the three input channels at
    those pixels also go, at full resolution, through ``Linear(3 * len(line_pixels),
    line_hidden) -> GELU -> Linear(line_hidden, features)``, and the result is added to the
    features. The last layer of that branch starts at zero, so a new branch leaves the
    features unchanged until training moves it (a network trained without it can be
    continued with it, `specutils_cinn.training.TrainingConfig` ``init_weights``).

    Parameters
    ----------
    npix : int
        Number of pixels of the model grid.
    channels : sequence of int, optional
        Output channels of the convolutions (1 to 6 layers).
    features : int, optional
        Number of output features.
    kind : {"cnn", "mlp"}, optional
        Network type.
    pool : int, optional
        Output length of the adaptive average pooling (``"cnn"``).
    hidden : int, optional
        Width of the dense hidden layer(s).
    line_pixels : sequence of int, optional
        Pixel indices read at full resolution by the line-window branch (distinct, in
        ``[0, npix)``); None or empty for no branch.
    line_hidden : int, optional
        Width of the line-window branch's hidden layer.
    line_standardize : bool, optional
        Center and scale each input of the line-window branch (`set_line_standardization`;
        the centers and scales are buffers saved with the weights). Without it the branch sees
        ``flux - 1`` of a weak line (a percent or less) next to log-sigma values of a few.

    Raises
    ------
    ValueError
        If an argument is invalid.
    """

    def __init__(
        self,
        npix: int,
        channels: Sequence[int] = (16, 32, 64, 64),
        features: int = 128,
        kind: ConditionerKind = "cnn",
        pool: int = 8,
        hidden: int = 256,
        line_pixels: Sequence[int] | None = None,
        line_hidden: int = 128,
        line_standardize: bool = False,
    ) -> None:
        super().__init__()
        self.npix = _positive_int("npix", npix)
        self.features = _positive_int("features", features)
        self.pool = _positive_int("pool", pool)
        self.hidden = _positive_int("hidden", hidden)
        if isinstance(channels, str | bytes) or not isinstance(channels, Sequence):
            raise ValueError(f"channels must be a sequence of positive integers, got {channels!r}")
        if not 1 <= len(channels) <= len(CNN_KERNELS):
            raise ValueError(
                f"channels must have 1 to {len(CNN_KERNELS)} entries, got {len(channels)}"
            )
        self.channels = tuple(_positive_int("channels entry", ch) for ch in channels)
        if kind not in ("cnn", "mlp"):
            raise ValueError(f"kind must be 'cnn' or 'mlp', got {kind!r}")
        self.kind: ConditionerKind = kind
        layers: list[nn.Module]
        if kind == "cnn":
            layers = []
            c_in = 3
            for c_out, k, s in zip(self.channels, CNN_KERNELS, CNN_STRIDES, strict=False):
                layers += [nn.Conv1d(c_in, c_out, k, stride=s, padding=k // 2), nn.GELU()]
                c_in = c_out
            layers += [
                nn.AdaptiveAvgPool1d(self.pool),
                nn.Flatten(),
                nn.Linear(c_in * self.pool, self.hidden),
                nn.GELU(),
                nn.Linear(self.hidden, self.features),
            ]
        else:
            layers = [
                nn.Flatten(),
                nn.Linear(3 * self.npix, self.hidden),
                nn.GELU(),
                nn.Linear(self.hidden, self.hidden),
                nn.GELU(),
                nn.Linear(self.hidden, self.features),
            ]
        self.net = nn.Sequential(*layers)
        self.line_hidden = _positive_int("line_hidden", line_hidden)
        pixels = [] if line_pixels is None else list(line_pixels)
        for i in pixels:
            if isinstance(i, bool) or not isinstance(i, Integral) or not 0 <= i < self.npix:
                raise ValueError(f"line_pixels must be pixel indices in [0, {self.npix}), "
                                 f"got {i!r}")
        if len(set(pixels)) != len(pixels):
            raise ValueError("line_pixels must be distinct")
        self.line_pixels = tuple(int(i) for i in pixels)
        self.line_net: nn.Sequential | None = None
        if self.line_pixels:
            self.register_buffer("line_index", torch.tensor(self.line_pixels, dtype=torch.long),
                                 persistent=False)
            last = nn.Linear(self.line_hidden, self.features)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.line_net = nn.Sequential(
                nn.Flatten(), nn.Linear(3 * len(self.line_pixels), self.line_hidden), nn.GELU(),
                last)
        if not isinstance(line_standardize, bool):
            raise ValueError(f"line_standardize must be true or false, got {line_standardize!r}")
        if line_standardize and not self.line_pixels:
            raise ValueError("line_standardize needs line_pixels")
        self.line_standardize = line_standardize
        if line_standardize:
            n = 3 * len(self.line_pixels)
            self.register_buffer("line_center", torch.zeros(n))
            self.register_buffer("line_scale", torch.ones(n))

    def set_line_standardization(self, inputs: Tensor) -> None:
        """Set the line branch's input standardization from encoded spectra.

        With ``line_standardize`` the branch's inputs (three channels at each window pixel)
        are centered and scaled per input before its first layer, so that a weak line's
        ``flux - 1`` (a percent or less) is on the scale of the log-sigma channel next to it.
        Training sets them once, from its fixed validation spectra; they are saved with the
        weights.

        Parameters
        ----------
        inputs : torch.Tensor
            Encoded spectra ``[B, 3, npix]``, ``B >= 2``.

        Raises
        ------
        ValueError
            If the conditioner has no ``line_standardize`` or ``inputs`` is unsuitable.
        """
        if not self.line_standardize:
            raise ValueError("this conditioner has no line_standardize")
        if inputs.ndim != 3 or inputs.shape[1:] != (3, self.npix) or inputs.shape[0] < 2:
            raise ValueError(f"inputs must have shape [B >= 2, 3, {self.npix}], got "
                             f"{tuple(inputs.shape)}")
        x = inputs.index_select(2, self.line_index.to(inputs.device)).flatten(1).double()
        with torch.no_grad():
            self.line_center.copy_(x.mean(0).to(self.line_center))
            self.line_scale.copy_(x.std(0).clamp_min(1e-3).to(self.line_scale))

    def extra_repr(self) -> str:
        return f"npix={self.npix}, kind={self.kind!r}, features={self.features}"

    def config(self) -> dict[str, Any]:
        """Return the JSON-able constructor arguments except ``npix``.

        Returns
        -------
        dict
            Keys ``kind``, ``channels`` (list), ``features``, ``pool``, ``hidden``, and with
            line windows also ``line_pixels`` (list) and ``line_hidden``.
        """
        conf: dict[str, Any] = {
            "kind": self.kind,
            "channels": list(self.channels),
            "features": self.features,
            "pool": self.pool,
            "hidden": self.hidden,
        }
        if self.line_pixels:
            conf.update(line_pixels=list(self.line_pixels), line_hidden=self.line_hidden)
        if self.line_standardize:
            conf["line_standardize"] = True
        return conf

    def forward(self, inputs: Tensor) -> Tensor:
        """Compute the conditioning features.

        Parameters
        ----------
        inputs : torch.Tensor
            Encoded spectra (see `encode_inputs`), shape ``[B, 3, npix]``.

        Returns
        -------
        torch.Tensor
            Features of shape ``[B, features]``.

        Raises
        ------
        ValueError
            If ``inputs`` has the wrong shape.
        """
        if inputs.ndim != 3 or inputs.shape[1:] != (3, self.npix):
            raise ValueError(
                f"inputs must have shape [B, 3, {self.npix}], got {tuple(inputs.shape)}"
            )
        features = self.net(inputs)
        if self.line_net is not None:
            x = inputs.index_select(2, self.line_index)
            if self.line_standardize:
                x = (x.flatten(1) - self.line_center) / self.line_scale
            features = features + self.line_net(x)
        return features
