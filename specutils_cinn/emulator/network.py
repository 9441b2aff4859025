r"""The emulator network: stellar labels to continuum-normalized flux on a wavelength grid."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..parameters import parameter_unit
from ..wavelength_grid import WavelengthGrid
from .gp import GaussianProcessCoefficients

__all__ = ["EMULATOR_KINDS", "SpectrumEmulator"]

#: Kinds of `SpectrumEmulator`: how the basis coefficients are made.
EMULATOR_KINDS = ("pca", "direct", "gp")

_ACTIVATIONS = {"silu": nn.SiLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class SpectrumEmulator(nn.Module):
    r"""Neural emulator of synthetic spectra (in the style of The Payne, Ting et al. 2019).

    The labels are scaled linearly to :math:`[-\tfrac12, \tfrac12]` over their training range,
    passed through a multi-layer perceptron with ``n_components`` outputs :math:`z`, and the
    flux is

    .. math:: f(\lambda) = \bar f(\lambda) + \sum_k z_k\, B_k(\lambda).

    With ``kind="pca"`` the last MLP layer is linear and :math:`B` starts as the principal
    components of the training spectra (scaled by their standard deviations); with
    ``kind="direct"`` the last hidden layer (activated) feeds :math:`B` directly, as in The
    Payne; with ``kind="gp"`` there is no MLP: :math:`B` are the principal components and
    :math:`z` the posterior means of Gaussian processes conditioned on the training stars
    (`specutils_cinn.emulator.gp`). The basis can be stored in float16 (relative rounding 5e-4
    of each basis term, negligible for the flux); the mean flux is always float32 (float16
    would round a flux near 1 by up to 5e-4).

    Parameters
    ----------
    label_names : sequence of str
        Input labels in order, names known to `specutils_cinn.parameters.parameter_unit`.
    label_ranges : array-like, shape ``[n_labels, 2]``
        Training range ``(low, high)`` of each label; inputs outside are rejected (or clamped).
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        Output pixel grid.
    kind : {"pca", "direct", "gp"}
        How the coefficients are made (see above).
    n_components : int
        Number of basis spectra :math:`B_k`.
    hidden : sequence of int
        Widths of the hidden layers.
    activation : {"silu", "leaky_relu", "tanh", "gelu"}
        Hidden-layer activation.
    storage_dtype : {"float32", "float16"}
        dtype of the basis.
    gp : mapping, optional
        ``kind="gp"`` only (and required there): ``{"n_train": int, "groups": [...],
        "kernel": str}``, the shape of `~specutils_cinn.emulator.gp.GaussianProcessCoefficients`
        (``hidden`` and ``activation`` are then unused and not recorded).

    Attributes
    ----------
    metadata : dict
        Metadata read by `~specutils_cinn.emulator.load_emulator` (empty otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid
    >>> grid = WavelengthGrid((GridSegment("A", 5000.0, 5010.0, 0.5),))
    >>> emu = SpectrumEmulator(["teff", "logg"], [[4000, 7000], [1, 5]], grid, n_components=4)
    >>> emu(np.array([[5000.0, 4.0]])).shape
    (1, 21)
    """

    def __init__(
        self,
        label_names: Sequence[str],
        label_ranges: Any,
        grid: WavelengthGrid,
        *,
        kind: str = "pca",
        n_components: int = 64,
        hidden: Sequence[int] = (256, 256),
        activation: str = "silu",
        storage_dtype: str = "float32",
        gp: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        names = [str(n) for n in label_names]
        for n in names:
            parameter_unit(n)  # raises KeyError for unknown names
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"label_names must be unique and non-empty, got {names}")
        ranges = np.asarray(label_ranges, dtype=np.float64)
        if ranges.shape != (len(names), 2) or not np.all(np.isfinite(ranges)):
            raise ValueError(f"label_ranges must be finite, shape ({len(names)}, 2)")
        if np.any(ranges[:, 1] <= ranges[:, 0]):
            raise ValueError("every label range needs high > low")
        if not isinstance(grid, WavelengthGrid):
            raise TypeError(f"grid must be a WavelengthGrid, got {type(grid).__name__}")
        if kind not in EMULATOR_KINDS:
            raise ValueError(f"kind must be one of {EMULATOR_KINDS}, got {kind!r}")
        if (kind == "gp") != (gp is not None):
            raise ValueError("the 'gp' argument is required for kind='gp' and only there")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if storage_dtype not in _DTYPES:
            raise ValueError(f"storage_dtype must be one of {sorted(_DTYPES)}")
        hidden = [int(h) for h in hidden]
        n_components = int(n_components)
        if n_components < 1 or any(h < 1 for h in hidden):
            raise ValueError("n_components and hidden widths must be positive")
        if kind == "direct" and hidden and hidden[-1] != n_components:
            hidden = hidden + [n_components]
        self.label_names = names
        self.label_ranges = ranges
        self.grid = grid
        self.metadata: dict[str, Any] = {}
        self._arch: dict[str, Any] = {
            "kind": kind,
            "n_labels": len(names),
            "npix": grid.npix,
            "n_components": n_components,
            "hidden": hidden,
            "activation": activation,
            "storage_dtype": storage_dtype,
        }
        layers: list[nn.Module] = []
        self.gp: GaussianProcessCoefficients | None = None
        if kind == "gp":
            del self._arch["hidden"], self._arch["activation"]
            try:
                layout = {"n_train": int(gp["n_train"]),
                          "groups": [int(g) for g in gp["groups"]], "kernel": str(gp["kernel"])}
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"gp must hold n_train, groups and kernel, got {gp!r}") from exc
            if set(gp) != set(layout):
                raise ValueError(f"gp must hold exactly n_train, groups and kernel, got {gp!r}")
            self._arch["gp"] = layout
            self.gp = GaussianProcessCoefficients(len(names), layout["n_train"], n_components,
                                                  layout["groups"], layout["kernel"])
        else:
            width = len(names)
            for h in hidden:
                layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
                width = h
            if kind == "pca":
                layers.append(nn.Linear(width, n_components))
        self.mlp = nn.Sequential(*layers)
        dtype = _DTYPES[storage_dtype]
        self.basis = nn.Parameter(
            torch.randn(n_components, grid.npix) / math.sqrt(n_components), requires_grad=False
        )
        self.basis.data = self.basis.data.to(dtype)
        self.register_buffer("flux_mean", torch.ones(grid.npix, dtype=torch.float32))
        lo, hi = torch.from_numpy(ranges[:, 0]), torch.from_numpy(ranges[:, 1])
        self.register_buffer("label_low", lo.clone())
        self.register_buffer("label_high", hi.clone())

    # ------------------------------------------------------------------ description
    @property
    def architecture(self) -> dict[str, Any]:
        """JSON-serializable constructor arguments (with label names, ranges and grid)."""
        return {
            **{k: (list(v) if isinstance(v, list) else v) for k, v in self._arch.items()},
            **({"gp": {**self._arch["gp"], "groups": list(self._arch["gp"]["groups"])}}
               if "gp" in self._arch else {}),
            "label_names": list(self.label_names),
            "label_ranges": self.label_ranges.tolist(),
            "grid": self.grid.to_dict(),
        }

    @classmethod
    def from_architecture(cls, arch: dict[str, Any]) -> SpectrumEmulator:
        """Build an (untrained) emulator from `architecture`.

        Raises
        ------
        ValueError
            If the description is malformed or inconsistent.
        """
        try:
            grid = WavelengthGrid.from_dict(arch["grid"])
            net = ({"gp": arch["gp"]} if arch["kind"] == "gp" else
                   {"hidden": arch["hidden"], "activation": arch["activation"]})
            emu = cls(arch["label_names"], arch["label_ranges"], grid, kind=arch["kind"],
                      n_components=arch["n_components"], storage_dtype=arch["storage_dtype"],
                      **net)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed emulator architecture: {exc!r}") from exc
        if emu.architecture != arch:
            raise ValueError("emulator architecture does not round-trip; file is inconsistent")
        return emu

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.flux_mean.device

    @property
    def n_weights(self) -> int:
        """Number of stored numbers (weights, basis, mean flux)."""
        return sum(t.numel() for t in self.state_dict().values())

    # ------------------------------------------------------------------ labels
    def check_labels(self, labels: torch.Tensor, clamp: bool = False) -> torch.Tensor:
        """Validate physical labels against the training ranges.

        Parameters
        ----------
        labels : torch.Tensor, shape ``[n, n_labels]``
            Physical labels in the order of `label_names`.
        clamp : bool
            If True, values outside the training range are clipped to it (documented
            extrapolation guard); if False they raise.

        Returns
        -------
        torch.Tensor
            The labels (clipped when ``clamp``), float64.

        Raises
        ------
        ValueError
            If the shape is wrong, a value is not finite, or (without ``clamp``) a value lies
            outside its training range; the message names the label.
        """
        x = labels.to(torch.float64)
        if x.ndim != 2 or x.shape[1] != len(self.label_names):
            raise ValueError(
                f"labels must have shape [n, {len(self.label_names)}] ({self.label_names}), "
                f"got {tuple(labels.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("labels must be finite")
        lo, hi = self.label_low.to(x.device), self.label_high.to(x.device)
        if clamp:
            return torch.minimum(torch.maximum(x, lo), hi)
        tol = 1e-9 * (hi - lo)
        bad = (x < lo - tol) | (x > hi + tol)
        if bad.any():
            row, col = (int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(
                f"label {self.label_names[col]!r} = {float(x[row, col]):g} (row {row}) is outside "
                f"the emulator's training range [{float(lo[col]):g}, {float(hi[col]):g}] "
                f"({int(bad.any(1).sum())} row(s) affected); pass clamp=True to clip"
            )
        return x

    def scale_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Physical labels (float64) to the network's :math:`[-1/2, 1/2]` range (float32)."""
        lo, hi = self.label_low.to(labels.device), self.label_high.to(labels.device)
        return ((labels - lo) / (hi - lo) - 0.5).to(torch.float32)

    # ------------------------------------------------------------------ evaluation
    def coefficients(self, scaled: torch.Tensor) -> torch.Tensor:
        """Basis coefficients :math:`z` from scaled labels (no checks)."""
        if self.gp is not None:
            return self.gp(scaled)
        return self.mlp(scaled)

    def flux_from_scaled(self, scaled: torch.Tensor) -> torch.Tensor:
        """Flux from scaled labels (no checks; differentiable)."""
        z = self.coefficients(scaled)
        return self.flux_mean.float() + z @ self.basis.float()

    def forward(self, labels: Any, *, clamp: bool = False, batch_size: int = 4096) -> Any:
        """Emulated flux for physical labels.

        Parameters
        ----------
        labels : `torch.Tensor` or array-like, shape ``[n, n_labels]`` or ``[n_labels]``
            Physical labels in the order of `label_names` (K, dex, km/s; A(Li) absolute).
        clamp : bool
            Clip labels to the training ranges instead of raising.
        batch_size : int
            Labels evaluated at once.

        Returns
        -------
        flux : `torch.Tensor` (on the emulator's device) or `numpy.ndarray`, float32
            Shape ``[n, grid.npix]`` (or ``[npix]``); a tensor for tensor input (differentiable
            with respect to the labels), numpy for anything else.

        Raises
        ------
        ValueError
            See `check_labels`.
        """
        is_tensor = isinstance(labels, torch.Tensor)
        x = labels if is_tensor else torch.as_tensor(np.asarray(labels, dtype=np.float64))
        one = x.ndim == 1
        x = self.check_labels(x.reshape(1, -1) if one else x, clamp=clamp).to(self.device)
        with torch.set_grad_enabled(is_tensor and torch.is_grad_enabled()):
            outs = [
                self.flux_from_scaled(self.scale_labels(x[i : i + batch_size]))
                for i in range(0, x.shape[0], batch_size)
            ]
        out = torch.cat(outs) if outs else x.new_zeros((0, self.grid.npix), dtype=torch.float32)
        out = out[0] if one else out
        return out if is_tensor else out.detach().cpu().numpy()

    def extra_repr(self) -> str:
        """Short description for ``repr``."""
        return f"labels={self.label_names}, npix={self.grid.npix}, {self._arch}"
