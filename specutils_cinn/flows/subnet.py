"""Fully connected subnetworks for the affine coupling blocks."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

from torch import nn

__all__ = ["MLPSubnet", "make_subnet"]


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def make_subnet(dims_in: int, dims_out: int, hidden: int, n_layers: int) -> nn.Sequential:
    """Build a ReLU multilayer perceptron whose output layer starts at zero.

    The network is ``Linear(dims_in, hidden), ReLU, [Linear(hidden, hidden), ReLU] * (n_layers - 1),
    Linear(hidden, dims_out)``.  The weight and bias of the last `~torch.nn.Linear` are
    initialized to zero, so a coupling block using this subnet starts as the identity map.
    Parameter names are those of `torch.nn.Sequential`: ``0.weight``, ``0.bias``,
    ``2.weight``, ..., ``{2 * n_layers}.weight``.

    Parameters
    ----------
    dims_in : int
        Input width (coupling half plus conditioning features).
    dims_out : int
        Output width (twice the width of the transformed half: scales then shifts).
    hidden : int
        Width of the hidden layers.
    n_layers : int
        Number of hidden layers (each a ``Linear`` followed by a ``ReLU``); at least 1.

    Returns
    -------
    torch.nn.Sequential
        The subnetwork; its first module is always a `~torch.nn.Linear`.

    Raises
    ------
    ValueError
        If any size is not a positive integer.
    """
    dims_in = _check_positive_int("dims_in", dims_in)
    dims_out = _check_positive_int("dims_out", dims_out)
    hidden = _check_positive_int("hidden", hidden)
    n_layers = _check_positive_int("n_layers", n_layers)
    layers: list[nn.Module] = [nn.Linear(dims_in, hidden), nn.ReLU()]
    for _ in range(n_layers - 1):
        layers += [nn.Linear(hidden, hidden), nn.ReLU()]
    last = nn.Linear(hidden, dims_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class MLPSubnet:
    """Subnet constructor: a callable ``(dims_in, dims_out) -> nn.Sequential``.

    This is the ``subnet_constructor`` passed to
    `~specutils_cinn.flows.GLOWCouplingBlock`, in the style of FrEIA.  Calling it
    returns `make_subnet` ``(dims_in, dims_out, hidden, n_layers)``.

    Parameters
    ----------
    hidden : int
        Width of the hidden layers.
    n_layers : int
        Number of hidden layers; at least 1.
    """

    hidden: int
    n_layers: int

    def __post_init__(self) -> None:
        _check_positive_int("hidden", self.hidden)
        _check_positive_int("n_layers", self.n_layers)

    def __call__(self, dims_in: int, dims_out: int) -> nn.Sequential:
        """Build one subnetwork.

        Parameters
        ----------
        dims_in, dims_out : int
            Input and output widths.

        Returns
        -------
        torch.nn.Sequential
            See `make_subnet`.
        """
        return make_subnet(dims_in, dims_out, self.hidden, self.n_layers)
