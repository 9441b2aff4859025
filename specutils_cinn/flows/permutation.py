"""Fixed random permutation of the flow dimensions (FrEIA 0.2 ``PermuteRandom``)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["PermuteRandom"]


def _permute_last(x: Tensor, index: Tensor) -> Tensor:
    """``x[..., index]`` via a 2-D ``index_select`` (several times faster on CPU than 3-D)."""
    return x.reshape(-1, x.shape[-1]).index_select(1, index).reshape(x.shape)


class PermuteRandom(nn.Module):
    """Permute the last dimension with a fixed random permutation.

    The permutation and its inverse are stored as ``int64`` buffers named ``perm`` and
    ``perm_inv``, the state-dict names FrEIA 0.2 uses, so a loaded state dict defines the
    permutation.  The permutation is drawn with a local ``numpy.random.default_rng(seed)``;
    the global NumPy random state is never touched.  Volume preserving: ``log_det = 0``.

    Parameters
    ----------
    dims_in : int
        Number of dimensions (at least 1).
    seed : int
        Seed of the permutation.

    Raises
    ------
    ValueError
        If ``dims_in`` is not a positive integer or ``seed`` is not a non-negative integer.
    """

    perm: Tensor
    perm_inv: Tensor

    def __init__(self, dims_in: int, seed: int) -> None:
        super().__init__()
        if isinstance(dims_in, bool) or not isinstance(dims_in, Integral) or dims_in < 1:
            raise ValueError(f"dims_in must be a positive integer, got {dims_in!r}")
        if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.dims_in = int(dims_in)
        self.seed = int(seed)
        perm = np.random.default_rng(self.seed).permutation(self.dims_in)
        self.register_buffer("perm", torch.from_numpy(perm.astype(np.int64)))
        self.register_buffer("perm_inv", torch.from_numpy(np.argsort(perm).astype(np.int64)))

    def extra_repr(self) -> str:
        return f"dims_in={self.dims_in}, seed={self.seed}"

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Apply the permutation, ``y[..., i] = x[..., perm[i]]``.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``[..., dims_in]``.
        c : torch.Tensor, optional
            Ignored (accepted for a uniform block interface).

        Returns
        -------
        y : torch.Tensor
            Permuted input.
        log_det : torch.Tensor
            Zeros of shape ``x.shape[:-1]``.
        """
        return _permute_last(x, self.perm), x.new_zeros(x.shape[:-1])

    def reverse(self, y: Tensor, c: Tensor | None = None) -> Tensor:
        """Undo the permutation, ``x[..., i] = y[..., perm_inv[i]]``.

        Parameters
        ----------
        y : torch.Tensor
            Shape ``[..., dims_in]``.
        c : torch.Tensor, optional
            Ignored.

        Returns
        -------
        torch.Tensor
            The un-permuted tensor.
        """
        return _permute_last(y, self.perm_inv)

    def precondition(self, c: Tensor, dtype: torch.dtype | None = None) -> None:
        """Return `None`: a permutation has nothing to precompute.

        Parameters
        ----------
        c : torch.Tensor
            Ignored.
        dtype : torch.dtype, optional
            Ignored.

        Returns
        -------
        None
        """
        return None

    def reverse_conditioned(self, z: Tensor, cache: None = None) -> Tensor:
        """Undo the permutation on draws of shape ``[B, S, dims_in]``.

        Parameters
        ----------
        z : torch.Tensor
            Shape ``[..., dims_in]``.
        cache : None, optional
            Ignored.

        Returns
        -------
        torch.Tensor
            The un-permuted draws.
        """
        return _permute_last(z, self.perm_inv)
