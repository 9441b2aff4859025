"""Conditional affine coupling block with FrEIA 0.2 ``GLOWCouplingBlock`` semantics."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ATAN_SCALE", "CouplingCache", "GLOWCouplingBlock", "SubnetCache", "soft_clamp"]

#: Factor of FrEIA 0.2's ``"ATAN"`` clamp activation, ``0.636 * atan(u)`` (about ``2 / pi``).
ATAN_SCALE = 0.636

SubnetConstructor = Callable[[int, int], nn.Module]


def soft_clamp(raw: Tensor, clamp: float) -> Tensor:
    """Soft-clamp log-scales as FrEIA 0.2 does with ``clamp_activation="ATAN"``.

    Parameters
    ----------
    raw : torch.Tensor
        Unbounded subnet outputs.
    clamp : float
        Clamp value; the result lies in ``(-clamp * 0.999, clamp * 0.999)``.

    Returns
    -------
    torch.Tensor
        ``clamp * 0.636 * atan(raw)``.
    """
    return clamp * (ATAN_SCALE * torch.atan(raw))


class SubnetCache(NamedTuple):
    """Per-spectrum conditioning term of one subnet (see `GLOWCouplingBlock.precondition`).

    Attributes
    ----------
    weight : torch.Tensor or None
        Columns of the subnet's first ``Linear`` weight acting on the coupling half, shape
        ``[hidden, split]``; `None` when the subnet does not start with a ``Linear`` (then
        ``term`` holds the raw conditioning features).
    term : torch.Tensor
        ``c @ W_c.T + bias`` of shape ``[B, hidden]`` (or the features ``[B, dims_c]``).
    hidden : tuple of (torch.Tensor, torch.Tensor or None), optional
        With a reduced sampling precision (`GLOWCouplingBlock.precondition` ``dtype``): the
        weights and biases of the hidden ``Linear`` layers between the first and the last,
        cast to that dtype once per call; None: every layer runs in float32.
    """

    weight: Tensor | None
    term: Tensor
    hidden: tuple[tuple[Tensor, Tensor | None], ...] | None = None


class CouplingCache(NamedTuple):
    """Preconditioned terms of both subnets of one `GLOWCouplingBlock`.

    Attributes
    ----------
    subnet1, subnet2 : SubnetCache
        Caches of ``subnet1`` and ``subnet2``.
    """

    subnet1: SubnetCache
    subnet2: SubnetCache


def _starts_with_linear(subnet: nn.Module) -> bool:
    return (
        isinstance(subnet, nn.Sequential) and len(subnet) > 0 and isinstance(subnet[0], nn.Linear)
    )


def _is_mlp(subnet: nn.Module) -> bool:
    """A `make_subnet` layout: Linear, then ReLU and Linear alternating, ending in a Linear."""
    layers = list(subnet)
    return (len(layers) % 2 == 1 and all(type(m) is nn.Linear for m in layers[::2])
            and all(type(m) is nn.ReLU for m in layers[1::2]))


def _precondition_subnet(subnet: nn.Module, c: Tensor, split: int,
                         dtype: torch.dtype | None = None) -> SubnetCache:
    if not _starts_with_linear(subnet):
        return SubnetCache(None, c)
    first = subnet[0]
    weight = first.weight
    term = F.linear(c, weight[:, split:], first.bias)
    hidden = None
    if dtype is not None and dtype != term.dtype and _is_mlp(subnet):
        hidden = tuple((m.weight.to(dtype), None if m.bias is None else m.bias.to(dtype))
                       for m in list(subnet)[2:-1:2])
    return SubnetCache(weight[:, :split].contiguous(), term, hidden)


def _run_cached(subnet: nn.Module, x: Tensor, cache: SubnetCache) -> Tensor:
    """Evaluate ``subnet(cat([x, c]))`` for ``x`` of shape ``[B, S, split]``."""
    if cache.weight is None:
        c = cache.term.unsqueeze(1).expand(x.shape[0], x.shape[1], cache.term.shape[-1])
        return subnet(torch.cat([x, c], dim=-1))
    h = F.linear(x, cache.weight).add_(cache.term.unsqueeze(1))
    if cache.hidden is not None:
        # the hidden x hidden products (nearly all of the work) in the reduced precision; the
        # first and last layers, and everything after the subnet, in float32
        h = torch.relu_(h).to(cache.hidden[0][0].dtype) if cache.hidden else torch.relu_(h)
        for weight, bias in cache.hidden:
            h = torch.relu_(F.linear(h, weight, bias))
        return subnet[-1](h.to(x.dtype))
    for layer in list(subnet)[1:]:
        # h is always a fresh intermediate here, so ReLU may run in place (saves an allocation)
        h = torch.relu_(h) if type(layer) is nn.ReLU else layer(h)
    return h


class GLOWCouplingBlock(nn.Module):
    """Conditional GLOW affine coupling block (FrEIA 0.2 ``GLOWCouplingBlock``).

    The input ``x`` is split into ``x1 = x[:, :split_len1]`` and ``x2 = x[:, split_len1:]``
    with ``split_len1 = dims_in // 2``.  A subnet output ``a`` gives log-scales and shifts
    ``s = clamp * 0.636 * atan(a[:, :n])`` and ``t = a[:, n:]``; the forward (parameters to
    latent) map is::

        (s2, t2) = subnet2(cat([x2, c]));  y1 = exp(s2) * x1 + t2
        (s1, t1) = subnet1(cat([y1, c]));  y2 = exp(s1) * x2 + t1
        log_det = sum(s2) + sum(s1)

    and `reverse` inverts it.  The conditioning features are concatenated after the
    coupling half, as FrEIA does, and parameter names (``subnet1.*``, ``subnet2.*``) match
    FrEIA 0.2 state dicts.

    Parameters
    ----------
    dims_in : int
        Number of dimensions transformed (at least 2).
    dims_c : int
        Number of conditioning features (at least 1).
    subnet_constructor : callable
        ``(dims_in, dims_out) -> torch.nn.Module``, e.g. `~specutils_cinn.flows.MLPSubnet`.
        Subnets that are a `torch.nn.Sequential` starting with a `torch.nn.Linear` get the
        fast preconditioned sampling path; others fall back to concatenating the features.
    clamp : float, optional
        Soft clamp of the log-scales (see `soft_clamp`).

    Raises
    ------
    ValueError
        If a size is not a valid integer or ``clamp`` is not positive.
    """

    def __init__(
        self,
        dims_in: int,
        dims_c: int,
        subnet_constructor: SubnetConstructor,
        clamp: float = 2.0,
    ) -> None:
        super().__init__()
        if isinstance(dims_in, bool) or not isinstance(dims_in, Integral) or dims_in < 2:
            raise ValueError(f"dims_in must be an integer >= 2, got {dims_in!r}")
        if isinstance(dims_c, bool) or not isinstance(dims_c, Integral) or dims_c < 1:
            raise ValueError(f"dims_c must be an integer >= 1, got {dims_c!r}")
        if isinstance(clamp, bool) or not isinstance(clamp, Real) or not 0 < clamp < float("inf"):
            raise ValueError(f"clamp must be a positive finite number, got {clamp!r}")
        self.dims_in = int(dims_in)
        self.dims_c = int(dims_c)
        self.clamp = float(clamp)
        self.split_len1 = self.dims_in // 2
        self.split_len2 = self.dims_in - self.split_len1
        self.subnet1 = subnet_constructor(self.split_len1 + self.dims_c, 2 * self.split_len2)
        self.subnet2 = subnet_constructor(self.split_len2 + self.dims_c, 2 * self.split_len1)

    def extra_repr(self) -> str:
        return f"dims_in={self.dims_in}, dims_c={self.dims_c}, clamp={self.clamp}"

    def _scale_shift(self, a: Tensor, n: int) -> tuple[Tensor, Tensor]:
        return soft_clamp(a[..., :n], self.clamp), a[..., n:]

    def _check(self, x: Tensor, c: Tensor, name: str) -> None:
        if x.ndim != 2 or x.shape[1] != self.dims_in:
            raise ValueError(f"{name} must have shape [B, {self.dims_in}], got {tuple(x.shape)}")
        if c.ndim != 2 or c.shape != (x.shape[0], self.dims_c):
            raise ValueError(
                f"c must have shape [{x.shape[0]}, {self.dims_c}], got {tuple(c.shape)}"
            )

    def forward(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Map parameters towards the latent space.

        Parameters
        ----------
        x : torch.Tensor
            Input of shape ``[B, dims_in]``.
        c : torch.Tensor
            Conditioning features of shape ``[B, dims_c]``.

        Returns
        -------
        y : torch.Tensor
            Output of shape ``[B, dims_in]``.
        log_det : torch.Tensor
            ``log |det dy/dx|`` of shape ``[B]``.
        """
        self._check(x, c, "x")
        x1, x2 = x[:, : self.split_len1], x[:, self.split_len1 :]
        s2, t2 = self._scale_shift(self.subnet2(torch.cat([x2, c], dim=1)), self.split_len1)
        y1 = torch.exp(s2) * x1 + t2
        s1, t1 = self._scale_shift(self.subnet1(torch.cat([y1, c], dim=1)), self.split_len2)
        y2 = torch.exp(s1) * x2 + t1
        return torch.cat([y1, y2], dim=1), s2.sum(dim=1) + s1.sum(dim=1)

    def _reverse(
        self, y: Tensor, run1: Callable[[Tensor], Tensor], run2: Callable[[Tensor], Tensor]
    ) -> Tensor:
        y1, y2 = y[..., : self.split_len1], y[..., self.split_len1 :]
        s1, t1 = self._scale_shift(run1(y1), self.split_len2)
        x2 = (y2 - t1) * torch.exp(-s1)
        s2, t2 = self._scale_shift(run2(x2), self.split_len1)
        x1 = (y1 - t2) * torch.exp(-s2)
        return torch.cat([x1, x2], dim=-1)

    def reverse(self, y: Tensor, c: Tensor) -> Tensor:
        """Invert `forward` (latent towards parameters).

        Parameters
        ----------
        y : torch.Tensor
            Output of `forward`, shape ``[B, dims_in]``.
        c : torch.Tensor
            Conditioning features of shape ``[B, dims_c]``.

        Returns
        -------
        torch.Tensor
            ``x`` of shape ``[B, dims_in]``.
        """
        self._check(y, c, "y")
        return self._reverse(
            y,
            lambda u: self.subnet1(torch.cat([u, c], dim=1)),
            lambda u: self.subnet2(torch.cat([u, c], dim=1)),
        )

    def precondition(self, c: Tensor, dtype: torch.dtype | None = None) -> CouplingCache:
        """Precompute the conditioning part of both subnets' first layer, once per spectrum.

        For a first layer ``Linear(split + dims_c, hidden)`` with weight ``W = [W_x, W_c]``
        this stores ``c @ W_c.T + bias`` (shape ``[B, hidden]``) and ``W_x``, so that
        `reverse_conditioned` evaluates ``W_x x + (W_c c + bias)`` for many draws per
        spectrum by broadcasting instead of repeating ``c``.

        Parameters
        ----------
        c : torch.Tensor
            Conditioning features of shape ``[B, dims_c]``.
        dtype : torch.dtype, optional
            Reduced precision (e.g. ``torch.bfloat16``) for the subnets' hidden-to-hidden
            layers in `reverse_conditioned` (`make_subnet` layouts only); the first and last
            layers, the clamps, exponentials and shifts stay in the dtype of ``c``.

        Returns
        -------
        CouplingCache
            Valid as long as the block's weights are unchanged.
        """
        if c.ndim != 2 or c.shape[1] != self.dims_c:
            raise ValueError(f"c must have shape [B, {self.dims_c}], got {tuple(c.shape)}")
        return CouplingCache(
            _precondition_subnet(self.subnet1, c, self.split_len1, dtype),
            _precondition_subnet(self.subnet2, c, self.split_len2, dtype),
        )

    def reverse_conditioned(self, z: Tensor, cache: CouplingCache) -> Tensor:
        """Reverse pass for ``S`` draws per spectrum using a `precondition` cache.

        Equal (to floating-point rounding) to `reverse` applied to ``z.reshape(B * S, D)``
        with each spectrum's features repeated ``S`` times, without materializing the
        repeated features or the concatenated subnet inputs.

        Parameters
        ----------
        z : torch.Tensor
            Shape ``[B, S, dims_in]``.
        cache : CouplingCache
            From `precondition` with features of batch size ``B``.

        Returns
        -------
        torch.Tensor
            Shape ``[B, S, dims_in]``.
        """
        batch = cache.subnet1.term.shape[0]
        if z.ndim != 3 or z.shape[0] != batch or z.shape[2] != self.dims_in:
            raise ValueError(
                f"z must have shape [{batch}, S, {self.dims_in}], got {tuple(z.shape)}"
            )
        return self._reverse(
            z,
            lambda u: _run_cached(self.subnet1, u, cache.subnet1),
            lambda u: _run_cached(self.subnet2, u, cache.subnet2),
        )
