r"""Gaussian-process regression of spectral basis coefficients (the ``kind = "gp"`` emulator).

A `~specutils_cinn.emulator.SpectrumEmulator` writes a spectrum as a mean plus a linear
combination of basis spectra. With ``kind = "gp"`` the coefficients :math:`z_k` of the principal
components are the posterior means of Gaussian processes over the scaled labels :math:`x`:

.. math:: z_k(x) = \sum_i k_g(x, x_i)\, \alpha_{ik}, \qquad
          \alpha_{\cdot k} = (C_g + \eta_g^2 I)^{-1} y_{\cdot k},

where :math:`x_i` are the training stars, :math:`y_{ik}` their coefficients, and :math:`k_g` a
stationary correlation (Matérn 5/2 or squared exponential) with one length scale per label
(automatic relevance determination). The components are split into a few consecutive groups
:math:`g` (e.g. the leading 16, the next 32, the rest); each group shares its length scales and
its relative noise :math:`\eta_g`, and every component has its own amplitude, which cancels in
the posterior mean. The hyperparameters of a group maximize the marginal likelihood with the
amplitudes profiled out,

.. math:: -\log L = \tfrac{n}{2} \sum_{k \in g} \log\!\big(y_{\cdot k}^\top
          (C_g + \eta_g^2 I)^{-1} y_{\cdot k}\big) + \tfrac{m_g}{2} \log\det(C_g + \eta_g^2 I)
          + \text{const},

with :math:`n` training stars and :math:`m_g` components in the group.

Against a multi-layer perceptron on the same components, a Gaussian process interpolates the
training stars exactly (up to :math:`\eta_g`), needs no early stopping, and its error falls
faster as the grid grows (``python scripts/emulator_accuracy.py``, docs/emulator.rst). Its file
holds the training inputs and :math:`\alpha` (float64: the solve is ill-conditioned by design),
``n_train x (n_labels + n_components) x 8`` bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "GP_KERNELS",
    "GaussianProcessCoefficients",
    "correlation",
    "fit_gaussian_process",
    "principal_basis",
]

#: Correlation functions of `GaussianProcessCoefficients`.
GP_KERNELS = ("matern52", "rbf")
_JITTER = 1e-8        # added to the diagonal on top of eta**2 (relative to unit variance)
_MIN_R2 = 1e-30       # keeps d sqrt(r2) finite at r = 0 (the Matérn gradient there is 0)


def correlation(a: torch.Tensor, b: torch.Tensor, lengthscales: torch.Tensor,
                kernel: str = "matern52") -> torch.Tensor:
    """Stationary correlation between two sets of points with per-dimension length scales.

    Parameters
    ----------
    a, b : torch.Tensor
        Points, shape ``[n, d]`` and ``[m, d]``.
    lengthscales : torch.Tensor
        Shape ``[d]``, positive.
    kernel : {"matern52", "rbf"}
        Matérn 5/2, :math:`(1 + \\sqrt5 r + 5r^2/3)\\,e^{-\\sqrt5 r}`, or the squared
        exponential :math:`e^{-r^2/2}`, with :math:`r` the scaled Euclidean distance.

    Returns
    -------
    torch.Tensor
        Shape ``[n, m]``, differentiable with respect to ``a``, ``b`` and ``lengthscales``
        (also where points coincide).
    """
    a, b = a / lengthscales, b / lengthscales
    r2 = ((a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * a @ b.T).clamp_min(0.0)
    if kernel == "rbf":
        return torch.exp(-0.5 * r2)
    if kernel != "matern52":
        raise ValueError(f"kernel must be one of {GP_KERNELS}, got {kernel!r}")
    s5 = torch.sqrt(5.0 * r2.clamp_min(_MIN_R2))
    return (1.0 + s5 + s5 * s5 / 3.0) * torch.exp(-s5)


def _check_groups(groups: Sequence[int], n_components: int) -> tuple[int, ...]:
    bounds = tuple(int(g) for g in groups)
    if (len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != n_components
            or any(b <= a for a, b in zip(bounds[:-1], bounds[1:], strict=True))):
        raise ValueError(f"GP component groups must rise strictly from 0 to n_components "
                         f"({n_components}), got {list(bounds)}")
    return bounds


class GaussianProcessCoefficients(nn.Module):
    """Posterior means of Gaussian processes over basis coefficients (see the module docs).

    Parameters
    ----------
    n_labels : int
        Dimension of the (scaled) label space.
    n_train : int
        Training stars the processes are conditioned on.
    n_components : int
        Coefficients predicted.
    groups : sequence of int
        Boundaries of the component groups, from 0 to ``n_components`` (e.g. ``(0, 16, 48,
        128)``); each group has its own length scales.
    kernel : {"matern52", "rbf"}
        Correlation function.

    Attributes
    ----------
    inputs : torch.Tensor
        Scaled labels of the training stars, ``[n_train, n_labels]``, float64.
    weights : torch.Tensor
        :math:`\\alpha`, ``[n_train, n_components]``, float64.
    lengthscales : torch.Tensor
        ``[n_groups, n_labels]``, float64.
    """

    def __init__(self, n_labels: int, n_train: int, n_components: int, groups: Sequence[int],
                 kernel: str = "matern52") -> None:
        super().__init__()
        if kernel not in GP_KERNELS:
            raise ValueError(f"kernel must be one of {GP_KERNELS}, got {kernel!r}")
        if min(n_labels, n_train, n_components) < 1:
            raise ValueError("n_labels, n_train and n_components must be positive")
        self.groups = _check_groups(groups, n_components)
        self.kernel = kernel
        f64 = torch.float64
        self.register_buffer("inputs", torch.zeros(n_train, n_labels, dtype=f64))
        self.register_buffer("weights", torch.zeros(n_train, n_components, dtype=f64))
        self.register_buffer("lengthscales", torch.ones(len(self.groups) - 1, n_labels,
                                                        dtype=f64))

    def forward(self, scaled: torch.Tensor) -> torch.Tensor:
        """Coefficients ``[n, n_components]`` (float32) from scaled labels ``[n, n_labels]``."""
        x = scaled.to(torch.float64)
        parts = []
        for g, (lo, hi) in enumerate(zip(self.groups[:-1], self.groups[1:], strict=True)):
            k = correlation(x, self.inputs, self.lengthscales[g], self.kernel)
            parts.append(k @ self.weights[:, lo:hi])
        return torch.cat(parts, 1).to(torch.float32)


def _negative_log_likelihood(x: torch.Tensor, y: torch.Tensor, log_ell: torch.Tensor,
                             log_eta: torch.Tensor, kernel: str) -> torch.Tensor:
    n, m = y.shape
    c = correlation(x, x, log_ell.exp(), kernel)
    c = c + (log_eta.exp() ** 2 + _JITTER) * torch.eye(n, dtype=c.dtype, device=c.device)
    chol = torch.linalg.cholesky(c)
    quad = (y * torch.cholesky_solve(y, chol)).sum(0)
    return 0.5 * n * torch.log(quad).sum() + m * torch.log(torch.diagonal(chol)).sum()


def fit_gaussian_process(
    x: torch.Tensor,
    y: torch.Tensor,
    groups: Sequence[int],
    *,
    kernel: str = "matern52",
    steps: int = 400,
    learning_rate: float = 0.05,
    max_fit_rows: int | None = 1500,
    generator: torch.Generator | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[GaussianProcessCoefficients, dict[str, list]]:
    """Fit the hyperparameters of each component group and condition on all training rows.

    Parameters
    ----------
    x : torch.Tensor
        Scaled labels of the training stars, ``[n, n_labels]``.
    y : torch.Tensor
        Their basis coefficients, ``[n, n_components]``.
    groups : sequence of int
        Boundaries of the component groups (see `GaussianProcessCoefficients`).
    kernel : {"matern52", "rbf"}
        Correlation function.
    steps : int
        Adam steps on the log length scales and log relative noise of each group.
    learning_rate : float
        Adam learning rate (in log units).
    max_fit_rows : int or None
        At most this many training rows (a random subset) enter the likelihood; the final
        conditioning always uses all rows. The cost of a step grows as the cube of the rows.
    generator : torch.Generator, optional
        Draws the subset.
    log : callable, optional
        Called with one line per group.

    Returns
    -------
    gp : GaussianProcessCoefficients
        Conditioned on all rows of ``x``, on ``x``'s device.
    history : dict
        Per group: ``groups``, ``lengthscales``, ``noise`` (:math:`\\eta_g`) and the final
        ``nll`` of the fit.

    Raises
    ------
    ValueError
        If the shapes disagree, a group or option is invalid, or a covariance matrix is not
        positive definite (e.g. duplicated training stars with different spectra).
    """
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} need the same rows (>= 2)")
    if steps < 0 or not learning_rate > 0:
        raise ValueError("steps must be >= 0 and learning_rate positive")
    n, n_labels = x.shape
    bounds = _check_groups(groups, y.shape[1])
    fit_rows = torch.arange(n)
    if max_fit_rows is not None and n > max_fit_rows:
        if max_fit_rows < 2:
            raise ValueError(f"max_fit_rows must be at least 2, got {max_fit_rows}")
        fit_rows = torch.randperm(n, generator=generator)[:max_fit_rows].sort().values
    xf = x[fit_rows.to(x.device)]
    gp = GaussianProcessCoefficients(n_labels, n, y.shape[1], bounds, kernel).to(x.device)
    gp.inputs.copy_(x)
    hist: dict[str, list] = {"groups": list(bounds), "lengthscales": [], "noise": [], "nll": []}
    eye = torch.eye(n, dtype=torch.float64, device=x.device)
    for g, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        yg = y[:, lo:hi]
        yf = yg[fit_rows.to(x.device)]
        log_ell = torch.zeros(n_labels, dtype=torch.float64, device=x.device,
                              requires_grad=True)        # length scale 1 = the label range
        log_eta = torch.tensor(math.log(1e-3), dtype=torch.float64, device=x.device,
                               requires_grad=True)
        opt = torch.optim.Adam([log_ell, log_eta], lr=learning_rate)
        nll = torch.tensor(math.nan)
        with torch.enable_grad():
            for _ in range(steps):
                try:
                    nll = _negative_log_likelihood(xf, yf, log_ell, log_eta, kernel)
                except torch.linalg.LinAlgError as exc:
                    raise _not_positive_definite(exc) from exc
                opt.zero_grad(set_to_none=True)
                nll.backward()
                opt.step()
        with torch.no_grad():
            ell, eta = log_ell.exp(), float(log_eta.exp())
            c = correlation(x, x, ell, kernel) + (eta**2 + _JITTER) * eye
            try:
                chol = torch.linalg.cholesky(c)
            except torch.linalg.LinAlgError as exc:
                raise _not_positive_definite(exc) from exc
            gp.weights[:, lo:hi] = torch.cholesky_solve(yg, chol)
            gp.lengthscales[g] = ell
        hist["lengthscales"].append([float(v) for v in ell])
        hist["noise"].append(eta)
        hist["nll"].append(float(nll.detach()))
        if log:
            log(f"gp components {lo}-{hi}: length scales "
                f"{' '.join(f'{v:.3g}' for v in ell.tolist())}, noise {eta:.2g}")
    return gp, hist


def principal_basis(
    residuals: torch.Tensor,
    wavelength: np.ndarray,
    n_components: int,
    group_bounds: Sequence[int] = (),
    windows: Sequence[Sequence[float]] = (),
    window_components: int = 8,
) -> tuple[torch.Tensor, list[int], list[dict[str, Any]]]:
    """Principal components of the training spectra, with windows that get components of their own.

    A line whose strength hangs on one label (Li I 6707.8 A on A(Li)) shares the leading
    components with features that hang on others, and one length scale per group of components
    then fits neither. Pixels inside ``windows`` are therefore left out of the ``n_components``
    global components (zero there); each window gets up to ``window_components`` components of
    its own (zero outside it), in a group of its own, so that its length scales are its own.

    Parameters
    ----------
    residuals : torch.Tensor
        Training spectra minus their mean, ``[n, npix]``.
    wavelength : numpy.ndarray
        Pixel wavelengths, ``[npix]`` (in the units and medium of ``windows``).
    n_components : int
        Global components (at most ``n``).
    group_bounds : sequence of int
        Inner boundaries of the groups of global components (e.g. ``(16, 48)``); boundaries at
        or above the number of components are dropped.
    windows : sequence of (float, float)
        Wavelength windows (inclusive), disjoint.
    window_components : int
        Components per window (at most ``n`` and the window's pixels).

    Returns
    -------
    basis : torch.Tensor
        ``[n_total, npix]``, orthonormal rows within each block.
    groups : list of int
        Boundaries of all groups, from 0 to ``n_total``.
    windows : list of dict
        Per window: ``window`` (A), ``pixels`` and ``components``.

    Raises
    ------
    ValueError
        If a window holds no pixel or two windows share pixels.
    """
    wave = torch.as_tensor(np.asarray(wavelength, dtype=np.float64))
    npix = residuals.shape[1]
    if wave.shape != (npix,):
        raise ValueError(f"wavelength has shape {tuple(wave.shape)}, expected ({npix},)")
    taken = torch.zeros(npix, dtype=torch.bool)
    masks = []
    for lo, hi in windows:
        m = (wave >= float(lo)) & (wave <= float(hi))
        if not m.any():
            raise ValueError(f"the window {float(lo):g}-{float(hi):g} A holds no pixel")
        if (m & taken).any():
            raise ValueError(f"the window {float(lo):g}-{float(hi):g} A overlaps another")
        taken |= m
        masks.append(m.to(residuals.device))
    rest = (~taken).to(residuals.device)
    _, _, vt = torch.linalg.svd(residuals[:, rest], full_matrices=False)
    k = min(int(n_components), vt.shape[0])
    block = residuals.new_zeros(k, npix)
    block[:, rest] = vt[:k]
    blocks, bounds = [block], [0, *(int(g) for g in group_bounds if 0 < int(g) < k), k]
    info = []
    for (lo, hi), m in zip(windows, masks, strict=True):
        _, _, v = torch.linalg.svd(residuals[:, m], full_matrices=False)
        kw = min(int(window_components), v.shape[0])
        block = residuals.new_zeros(kw, npix)
        block[:, m] = v[:kw]
        blocks.append(block)
        bounds.append(bounds[-1] + kw)
        info.append({"window": [float(lo), float(hi)], "pixels": int(m.sum()),
                     "components": kw})
    return torch.cat(blocks), bounds, info


def _not_positive_definite(exc: Exception) -> ValueError:
    return ValueError(f"Gaussian-process covariance not positive definite ({exc}); are there "
                      "duplicated training stars?")
