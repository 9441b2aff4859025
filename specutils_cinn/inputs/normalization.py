"""Continuum normalization of many spectra at once, on a model's wavelength grid.

`Normalization` is a model's convention (stored in its metadata): which continuum, of which
degree, fitted with how many clipping iterations, its training spectra were divided by.
`normalize_continuum` applies such a continuum to spectra on the grid.

Each segment of the grid gets its own polynomial continuum (segments are never
stitched). The fit is a batched linear least-squares problem: for every row the
normal equations ``A c = b`` of a Legendre basis are built with one matrix product
over all rows and solved with one call to `numpy.linalg.solve` on a ``(N, k, k)``
stack, then pixels far from the fit are clipped and the fit repeated.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.polynomial import legendre

from .._fields import field_error
from ..wavelength_grid import WavelengthGrid

__all__ = ["Normalization", "fit_continuum", "fit_segment_continuum", "normalize_continuum"]

#: Rows of about this many pixels are fitted at once (cache-sized blocks).
_CHUNK_ELEMENTS = 1 << 17
#: At most about this many pixels per segment enter the fit (every n-th pixel is used).
_MAX_FIT_POINTS = 1024
#: Relative ridge added to the normal equations so that they are never singular.
_RIDGE = 1e-12


def fit_continuum(
    flux: np.ndarray,
    valid: np.ndarray,
    grid: WavelengthGrid,
    degree: int = 3,
    n_iter: int = 5,
    lower: float = 1.5,
    upper: float = 3.0,
    *,
    floor: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a clipped polynomial continuum to each row and each grid segment.

    Parameters
    ----------
    flux : numpy.ndarray
        Flux on the grid, shape ``(N, grid.npix)``. Values at invalid pixels are ignored
        (they may be NaN).
    valid : numpy.ndarray
        Boolean, same shape: pixels that may be used.
    grid : WavelengthGrid
        The grid the flux is sampled on; one continuum per segment.
    degree : int, optional
        Degree of the Legendre polynomial of each segment, on the wavelength scaled to
        ``[-1, 1]`` over the segment.
    n_iter : int, optional
        Maximum number of clipping iterations (the fit stops earlier once no pixel
        changes state in any row).
    lower, upper : float, optional
        Pixels more than ``lower`` times the residual RMS below the fit, or ``upper``
        times above it, are left out of the next fit. The asymmetry pushes the fit
        towards the upper envelope of a spectrum with absorption lines.
    floor : float, optional
        Lowest continuum, as a fraction (0 to 1) of the highest value of the row's
        continuum in the segment; 0 (the default) leaves the polynomial as it is. Where the
        whole segment is blanketed by lines and broad wings reach its end (Ca II H and K
        at the blue end of 4MOST's HB arm in cool stars), the clipped cubic follows the
        wings down to zero and below, and dividing by it gives normalized fluxes of
        thousands; a floor of 0.1 keeps them near the spectrum's own level.

    Returns
    -------
    continuum : numpy.ndarray
        Shape ``(N, grid.npix)``, float64. NaN in segments whose fit failed.
    fitted : numpy.ndarray
        Boolean, shape ``(N, len(grid.segments))``: whether the segment's fit worked
        (at least ``max(3 * (degree + 1), 10)`` valid pixels).

    Raises
    ------
    ValueError
        If the shapes do not match the grid or an argument is out of range.

    Notes
    -----
    All valid, unclipped pixels have the same weight; the clipping scale is the RMS of
    the residuals of the pixels used in the previous fit, so the fit needs no
    uncertainties. This is robust against line blanketing, which dominates the
    residuals of high-S/N stellar spectra. Segments longer than 1024 pixels are fitted
    on every ``n``-th pixel (``n = ceil(npix / 1024)``, centered in the segment), which
    determines a low-order polynomial just as well at a fraction of the cost; the
    continuum is then evaluated on every pixel.
    """
    f_all, ok_all = _check(flux, valid, grid)
    n_rows = f_all.shape[0]
    continuum = np.full(f_all.shape, np.nan)
    fitted = np.zeros((n_rows, len(grid.segments)), dtype=bool)
    for i_seg, sl in enumerate(grid.segment_slices):
        continuum[:, sl], fitted[:, i_seg] = fit_segment_continuum(
            f_all[:, sl], ok_all[:, sl], degree=degree, n_iter=n_iter, lower=lower, upper=upper,
            floor=floor,
        )
    return continuum, fitted


def fit_segment_continuum(
    flux: np.ndarray,
    valid: np.ndarray,
    degree: int = 3,
    n_iter: int = 5,
    lower: float = 1.5,
    upper: float = 3.0,
    *,
    floor: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a clipped polynomial continuum to each row of one uniformly sampled segment.

    This is the building block of `fit_continuum`; see it for the method.

    Parameters
    ----------
    flux : numpy.ndarray
        Shape ``(N, P)``: the pixels of one grid segment, in wavelength order with a
        constant step. Values at invalid pixels are ignored.
    valid : numpy.ndarray
        Boolean, same shape.
    degree, n_iter, lower, upper, floor
        As in `fit_continuum`.

    Returns
    -------
    continuum : numpy.ndarray
        Shape ``(N, P)``, float64; NaN in rows whose fit failed.
    fitted : numpy.ndarray
        Boolean, shape ``(N,)``: whether the row had enough valid pixels to be fitted.

    Raises
    ------
    ValueError
        If the shapes differ or an argument is out of range.
    """
    f_all = np.asarray(flux, dtype=np.float64)
    ok_all = np.asarray(valid, dtype=bool)
    if f_all.ndim != 2 or ok_all.shape != f_all.shape:
        raise ValueError(
            f"flux and valid must be 2-D arrays of the same shape, got {f_all.shape} "
            f"and {ok_all.shape}"
        )
    if isinstance(degree, bool) or int(degree) != degree or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")
    if isinstance(n_iter, bool) or int(n_iter) != n_iter or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer, got {n_iter!r}")
    if not (lower > 0 and upper > 0):
        raise ValueError(f"lower and upper must be positive, got {lower}, {upper}")
    _check_floor(floor)
    degree, n_iter = int(degree), int(n_iter)
    n_rows, npix = f_all.shape
    if n_rows == 0 or npix == 0:
        return np.full(f_all.shape, np.nan), np.zeros(n_rows, dtype=bool)
    continuum = np.empty(f_all.shape)
    fitted = np.zeros(n_rows, dtype=bool)
    n_min = max(3 * (degree + 1), 10)
    start, stride, moments, lin, basis_t = _basis(npix, degree)
    step = max(1, _CHUNK_ELEMENTS // npix)
    for r0 in range(0, n_rows, step):
        rows = slice(r0, min(n_rows, r0 + step))
        f_fit = f_all[rows, start::stride]
        ok = ok_all[rows, start::stride] & np.isfinite(f_fit)
        coef, good = _fit_block(f_fit, ok, moments, lin, n_iter, lower, upper, n_min)
        coef[~good] = np.nan
        if step >= n_rows:  # a single block: no copy into the full-size array
            return _apply_floor(coef @ basis_t, floor), good
        np.matmul(coef, basis_t, out=continuum[rows])
        _apply_floor(continuum[rows], floor)
        fitted[rows] = good
    return continuum, fitted


def _check_floor(floor: float) -> None:
    if isinstance(floor, bool) or not isinstance(floor, int | float | np.floating | np.integer) \
            or not 0.0 <= floor < 1.0:
        raise ValueError(f"floor must be a number from 0 to below 1, got {floor!r}")


def _apply_floor(continuum: np.ndarray, floor: float) -> np.ndarray:
    """``continuum`` (rows of one segment) raised in place to at least ``floor`` times each
    row's highest value; rows of NaN (failed fits) stay NaN."""
    if floor > 0 and continuum.size:
        with np.errstate(invalid="ignore"):
            top = np.max(continuum, axis=1, keepdims=True)
        np.maximum(continuum, floor * top, out=continuum)
    return continuum


@functools.lru_cache(maxsize=32)
def _basis(npix: int, degree: int) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Fit-pixel selection and Legendre bases for a segment of ``npix`` pixels.

    Returns ``start, stride`` (the fitted pixels are ``start::stride``), the Legendre
    polynomials up to ``2 * degree`` at the fitted pixels ``(P_fit, 2 * degree + 1)``, the
    linearization matrix ``lin`` with ``P_a P_b = sum_j lin[a * k + b, j] P_j`` and the
    basis up to ``degree`` on all pixels, transposed ``(degree + 1, npix)``.
    """
    k = degree + 1
    x = np.linspace(-1.0, 1.0, npix) if npix > 1 else np.zeros(1)
    stride = -(-npix // _MAX_FIT_POINTS)
    start = (npix - 1 - stride * ((npix - 1) // stride)) // 2
    moments = legendre.legvander(x[start::stride], 2 * degree)
    lin = np.zeros((k * k, 2 * degree + 1))
    for a in range(k):
        for b in range(k):
            prod = legendre.legmul(np.eye(k)[a], np.eye(k)[b])
            lin[a * k + b, : len(prod)] = prod
    basis_t = np.ascontiguousarray(legendre.legvander(x, degree).T)
    for arr in (moments, lin, basis_t):
        arr.flags.writeable = False
    return start, stride, moments, lin, basis_t


def _fit_block(
    flux: np.ndarray,
    ok: np.ndarray,
    moments: np.ndarray,
    lin: np.ndarray,
    n_iter: int,
    lower: float,
    upper: float,
    n_min: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Clipped fits of one block of rows of one segment; returns (coefficients, fitted)."""
    f = np.where(ok, flux, 0.0)
    k = int(round(np.sqrt(lin.shape[0])))
    basis = moments[:, :k]
    basis_t = np.ascontiguousarray(basis.T)
    eye = np.eye(k)
    keep = ok
    w = keep.astype(np.float64)
    n_used = w.sum(axis=1)
    fitted = n_used >= n_min
    for it in range(n_iter + 1):
        wf = w * f
        a = ((w @ moments) @ lin.T).reshape(-1, k, k)
        rhs = wf @ basis
        ridge = _RIDGE * np.trace(a, axis1=1, axis2=2)[:, None, None] + 1e-300
        a[~fitted] = eye  # rows that cannot be fitted: any well-posed system
        coef = np.linalg.solve(a + ridge * eye, rhs[:, :, None])[:, :, 0]
        if it == n_iter:
            break
        # residual sum of squares without another pass: sum w f^2 - coef . rhs
        sum_f2 = np.einsum("rp,rp->r", wf, f)
        rss = sum_f2 - np.einsum("rk,rk->r", coef, rhs)
        n_safe = np.maximum(n_used, 1.0)
        scale = np.sqrt(np.maximum(rss, 0.0) / n_safe)
        scale = np.maximum(scale, 1e-6 * np.sqrt(sum_f2 / n_safe))
        # keep pixels with -lower * scale < f - cont < upper * scale, i.e.
        # |f - cont - center| < half with center = (upper - lower) / 2 * scale
        dist = coef @ basis_t
        dist += (0.5 * (upper - lower) * scale)[:, None]
        dist -= f
        np.abs(dist, out=dist)
        new_keep = dist < (0.5 * (upper + lower) * scale)[:, None]
        new_keep &= ok
        n_new = np.count_nonzero(new_keep, axis=1)
        too_few = n_new < n_min  # such rows keep their previous selection
        if np.any(too_few):
            new_keep[too_few] = keep[too_few]
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
        w = keep.astype(np.float64)
        n_used = w.sum(axis=1)
    return coef, fitted


def normalize_continuum(
    flux: np.ndarray,
    sigma: np.ndarray | None,
    valid: np.ndarray,
    grid: WavelengthGrid,
    degree: int = 3,
    n_iter: int = 5,
    *,
    floor: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Divide spectra by a fitted continuum, segment by segment.

    Parameters
    ----------
    flux : numpy.ndarray
        Flux on the model grid, shape ``(N, grid.npix)``.
    sigma : numpy.ndarray or None
        Flux uncertainties (standard deviations), same shape, or `None`.
    valid : numpy.ndarray
        Boolean, same shape: pixels that may be used.
    grid : WavelengthGrid
        The grid the flux is sampled on.
    degree : int, optional
        Polynomial degree per segment (see `fit_continuum`).
    n_iter : int, optional
        Maximum number of clipping iterations (see `fit_continuum`).
    floor : float, optional
        Lowest continuum as a fraction of each segment's highest (see `fit_continuum`).

    Returns
    -------
    flux_n : numpy.ndarray
        ``flux / continuum``, float64; NaN where ``valid_n`` is False.
    sigma_n : numpy.ndarray or None
        ``sigma / continuum`` (NaN where ``valid_n`` is False), or `None` when ``sigma``
        is `None`.
    valid_n : numpy.ndarray
        ``valid`` and a positive, finite continuum: pixels of segments whose fit failed
        become invalid.

    Raises
    ------
    ValueError
        If the shapes do not match the grid or an argument is out of range.
    """
    f, ok = _check(flux, valid, grid)
    continuum, _ = fit_continuum(f, ok, grid, degree=degree, n_iter=n_iter, floor=floor)
    valid_n = ok & (continuum > 0)  # False where NaN
    flux_n = np.full(f.shape, np.nan)
    np.divide(f, continuum, out=flux_n, where=valid_n)
    if sigma is None:
        return flux_n, None, valid_n
    s = np.asarray(sigma, dtype=np.float64)
    if s.shape != f.shape:
        raise ValueError(f"sigma must have the shape of flux {f.shape}, got {s.shape}")
    sigma_n = np.full(f.shape, np.nan)
    np.divide(s, continuum, out=sigma_n, where=valid_n)
    valid_n &= np.isfinite(sigma_n) & (sigma_n > 0)
    return flux_n, sigma_n, valid_n


def _check(
    flux: np.ndarray, valid: np.ndarray, grid: WavelengthGrid
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(grid, WavelengthGrid):
        raise TypeError(f"grid must be a WavelengthGrid, got {type(grid).__name__}")
    f = np.asarray(flux, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool)
    if f.ndim != 2 or f.shape[1] != grid.npix:
        raise ValueError(f"flux must have shape (N, {grid.npix}), got {f.shape}")
    if ok.shape != f.shape:
        raise ValueError(f"valid must have the shape of flux {f.shape}, got {ok.shape}")
    return f, ok & np.isfinite(f)


# --------------------------------------------------------------------------- the convention

#: The kind of normalization applied to every input spectrum (`Normalization.fits_continuum`).
_PSEUDO_CONTINUUM = "pseudo-continuum"
#: The keys of a normalization in model metadata, in the order they are written.
_KEYS = ("kind", "degree", "n_iter", "floor")
#: The keys written by default (``floor`` too when it is not 0).
_DEFAULT_KEYS = ("kind", "degree", "n_iter")


@dataclass(frozen=True)
class Normalization:
    """How a model's input flux is continuum-normalized: the convention of its training spectra.

    A model's metadata holds one (`~specutils_cinn.models.ModelMetadata`, ``"normalization"``
    in its JSON). It is applied to observed spectra by `~specutils_cinn.inputs.prepare_spectra`
    (with the arguments of `prepare_arguments`) and to training spectra by `apply`, so that
    both reach the network the same way.

    Parameters
    ----------
    kind : str
        ``"pseudo-continuum"``: every input spectrum, normalized or not, is divided by a
        clipped Legendre polynomial continuum per grid segment (`normalize_continuum` with
        ``degree``, ``n_iter`` and ``floor``), as the training spectra were. Any other kind (e.g.
        ``"continuum"``: the inputs are continuum-normalized) leaves the choice to the
        ``normalize`` argument of `~specutils_cinn.inputs.prepare_spectra` (``"auto"``: only
        spectra that do not look normalized are divided by that continuum), and `apply`
        leaves spectra unchanged.
    degree : int, optional
        Polynomial degree of each segment's continuum.
    n_iter : int, optional
        Clipping iterations of the continuum fit.
    floor : float, optional
        Lowest continuum, as a fraction of the highest of each segment's continuum
        (`fit_continuum`); 0 (the default, and the v1 models' convention) for none.
    stated : tuple of str, optional
        The keys `to_dict` writes, in order (keyword only). `from_dict` keeps the keys it was
        given, so that metadata that leaves out ``degree``, ``n_iter`` or ``floor`` (their
        defaults apply) is written back byte for byte. Default: ``kind``, ``degree``,
        ``n_iter``, and ``floor`` when it is not 0. A key whose value is not its default must
        be stated. Not compared by ``==``.

    Raises
    ------
    ValueError
        If a field is invalid; the message names it (``normalization.<field>``).

    Notes
    -----
    For one release, ``normalization["kind"]`` and ``normalization.get("degree", 3)`` read
    the fields as when `~specutils_cinn.models.ModelMetadata.normalization` was a dict.
    """

    kind: str
    degree: int = 3
    n_iter: int = 5
    floor: float = 0.0
    stated: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                           kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise field_error("normalization.kind", f"expected a non-empty string, got "
                              f"{self.kind!r}")
        for name in ("degree", "n_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise field_error(f"normalization.{name}",
                                  f"expected a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        try:
            _check_floor(self.floor)
        except ValueError as err:
            raise field_error("normalization.floor", str(err).removeprefix("floor ")) from None
        # a Python number as given (``0`` stays ``0``: metadata is written back byte for byte)
        object.__setattr__(self, "floor",
                           int(self.floor) if isinstance(self.floor, int | np.integer)
                           else float(self.floor))
        stated = self.stated
        if stated is None:
            stated = _DEFAULT_KEYS + (("floor",) if self.floor else ())
        if (isinstance(stated, str) or not isinstance(stated, tuple | list)
                or "kind" not in stated or len(set(stated)) != len(stated)
                or not set(stated) <= set(_KEYS)):
            raise field_error("normalization.stated",
                              f"expected distinct keys among {_KEYS} with 'kind', got {stated!r}")
        if self.floor and "floor" not in stated:
            raise field_error("normalization.stated", "a floor other than 0 must be stated")
        object.__setattr__(self, "stated", tuple(stated))

    @property
    def fits_continuum(self) -> bool:
        """Whether every input spectrum is divided by the fitted continuum.

        True for ``"pseudo-continuum"``.
        """
        return self.kind == _PSEUDO_CONTINUUM

    def apply(
        self,
        flux: np.ndarray,
        sigma: np.ndarray | None,
        valid: np.ndarray,
        grid: WavelengthGrid,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Normalize spectra on the model grid as this convention says.

        Parameters
        ----------
        flux : numpy.ndarray
            Flux on the model grid, shape ``(N, grid.npix)``.
        sigma : numpy.ndarray or None
            Flux uncertainties (standard deviations), same shape, or `None`.
        valid : numpy.ndarray
            Boolean, same shape: pixels that may be used.
        grid : WavelengthGrid
            The grid the flux is sampled on.

        Returns
        -------
        flux, sigma, valid : numpy.ndarray
            For ``"pseudo-continuum"`` the result of `normalize_continuum` with `degree`,
            `n_iter` and `floor` (NaN where the fit failed, and ``valid`` False there); for
            other kinds the arguments, unchanged.
        """
        if not self.fits_continuum:
            return flux, sigma, valid
        return normalize_continuum(flux, sigma, valid, grid, degree=self.degree,
                                   n_iter=self.n_iter, floor=self.floor)

    def prepare_arguments(self, normalize: bool | str = "auto") -> dict[str, Any]:
        """Arguments of `~specutils_cinn.inputs.prepare_spectra` that follow this convention.

        Parameters
        ----------
        normalize : bool or "auto", optional
            The caller's choice; ``"auto"`` becomes True for ``"pseudo-continuum"`` (the model
            saw spectra divided by this very continuum: every input, normalized or not, gets
            it).

        Returns
        -------
        dict
            ``normalize``, ``continuum_degree``, ``continuum_iterations`` and
            ``continuum_floor``.
        """
        if self.fits_continuum and isinstance(normalize, str) and normalize == "auto":
            normalize = True
        return {"normalize": normalize, "continuum_degree": self.degree,
                "continuum_iterations": self.n_iter, "continuum_floor": self.floor}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of model metadata.

        Returns
        -------
        dict
            The keys of `stated` (by default ``kind``, ``degree``, ``n_iter``) and their values.
        """
        return {key: getattr(self, key) for key in self.stated}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalization:
        """Build a normalization from the output of `to_dict` (model metadata).

        Parameters
        ----------
        d : dict
            With a string ``kind`` and optionally ``degree``, ``n_iter`` and ``floor``
            (defaults 3, 5 and 0).

        Returns
        -------
        Normalization
            Its `to_dict` gives ``d`` back, keys in the same order.

        Raises
        ------
        ValueError
            If ``d`` is not an object, ``kind`` is missing, a key is unknown or a value is
            invalid; the message names the field.
        """
        if not isinstance(d, Mapping):
            raise field_error("normalization", f'expected an object with a string "kind", '
                              f"got {d!r}")
        unknown = [key for key in d if key not in _KEYS]
        if unknown:
            raise field_error(f"normalization.{unknown[0]}", "unknown key")
        if "kind" not in d:
            raise field_error("normalization.kind", "missing")
        return cls(**dict(d), stated=tuple(d))

    def __getitem__(self, key: str) -> Any:
        """``normalization[key]``: a key of `to_dict` (read access kept for one release)."""
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """``normalization.get(key, default)``, as on `to_dict` (kept for one release).

        Parameters
        ----------
        key : str
            ``"kind"``, ``"degree"`` or ``"n_iter"``.
        default : object, optional
            Returned when ``key`` is not among `stated`.

        Returns
        -------
        object
            The value.
        """
        return self.to_dict().get(key, default)
