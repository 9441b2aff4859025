"""The options of one inference call, gathered and checked in one place.

`~specutils_cinn.CINNParameterEstimator.predict`,
`~specutils_cinn.CINNParameterEstimator.sample_posterior` and
`~specutils_cinn.CINNParameterEstimator.emulated_spectrum` take their options as keyword
arguments, build one `PredictionOptions` from them and pass that object on. Building it checks
every option, so that a bad argument is refused with a `ValueError` naming it before any
spectrum is read, resampled or sent through the network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from astropy import units as u

from ._checks import check_batch_size, check_n_samples, check_quantiles, check_seed, is_int
from .devices import resolve_device
from .inputs import doppler_factor

__all__ = ["PredictionOptions"]

@dataclasses.dataclass(frozen=True, eq=False)
class PredictionOptions:
    """The per-call options of the estimator's inference methods, checked when built.

    The fields are the keyword arguments of
    `~specutils_cinn.CINNParameterEstimator.predict` (see there for their meaning), with
    the same defaults. Each is checked on construction; normalized values are stored
    (``quantiles`` as a tuple of floats, ``seed`` as an int, ``device`` as a
    `torch.device`, ``calibrated`` as a bool). The instance is frozen; use
    `dataclasses.replace` for a changed copy, which is checked again.

    What can only be checked against the spectra (the length of a per-spectrum
    ``radial_velocity`` or ``snr``, the media of the inputs) is checked by
    `~specutils_cinn.inputs.prepare_spectra`, still before any resampling.

    Parameters
    ----------
    n_samples : int, optional
        Posterior draws per spectrum, at least 2.
    quantiles : float or sequence of float, optional
        Quantile levels in (0, 1).
    batch_size : int or None, optional
        Spectra per network call (positive), or None for the automatic choice.
    device : {"auto", "cpu", "cuda"}, `torch.device` or None, optional
        None: the estimator's device.
    seed : int or None, optional
        An integer from 0 to 2**63 - 1, or None for a fresh random seed (drawn by
        `with_seed`).
    radial_velocity : `~astropy.units.Quantity` or None, optional
        A velocity, scalar or one-dimensional, finite and slower than light.
    progress : bool, callable or None, optional
        Progress bar on (True) or off (False), a ``progress(done, total)`` callable, or None
        (a bar when standard error is a terminal).
    medium : {"air", "vacuum"} or None, optional
        Medium of the input wavelengths; None: from the spectra's ``meta["medium"]``.
    snr : float, array-like, "estimate" or None, optional
        Finite positive S/N per Angstrom (scalar or one-dimensional), or ``"estimate"``.
    normalize : {"auto", True, False}, optional
        Continuum normalization of the input.
    fit_chi2_threshold : float or None, optional
        A positive finite number, or None for the model's own threshold.
    calibrated : bool, optional
        Apply the model's posterior calibration.

    Raises
    ------
    ValueError
        If an option is invalid; the message names it.

    Examples
    --------
    >>> from specutils_cinn.options import PredictionOptions
    >>> PredictionOptions(n_samples=500, seed=1).quantiles
    (0.16, 0.5, 0.84)
    >>> PredictionOptions(n_samples=1)
    Traceback (most recent call last):
    ...
    ValueError: n_samples must be an integer >= 2, got 1
    """

    n_samples: int = 1000
    quantiles: Sequence[float] = (0.16, 0.5, 0.84)
    batch_size: int | None = None
    device: str | torch.device | None = None
    seed: int | None = None
    radial_velocity: u.Quantity | None = None
    progress: bool | Callable[[int, int], Any] | None = None
    medium: str | None = None
    snr: float | np.ndarray | str | None = None
    normalize: bool | str = "auto"
    fit_chi2_threshold: float | None = None
    calibrated: bool = True

    def __post_init__(self) -> None:
        check_n_samples(self.n_samples)
        self._set("quantiles", check_quantiles(self.quantiles))
        check_batch_size(self.batch_size)
        if self.device is not None:
            self._set("device", resolve_device(self.device))
        if self.seed is not None:
            self._set("seed", check_seed(self.seed))
        _check_radial_velocity(self.radial_velocity)
        _check_progress(self.progress)
        if not (self.medium is None or (isinstance(self.medium, str)
                                         and self.medium in ("air", "vacuum"))):
            raise ValueError(f"medium must be 'air', 'vacuum' or None, got {self.medium!r}")
        _check_snr(self.snr)
        if not (isinstance(self.normalize, bool | np.bool_) or _is_auto(self.normalize)):
            raise ValueError(
                f"normalize must be True, False or 'auto', got {self.normalize!r}"
            )
        _check_threshold(self.fit_chi2_threshold)
        if not isinstance(self.calibrated, bool | np.bool_):
            raise ValueError(f"calibrated must be True or False, got {self.calibrated!r}")
        self._set("calibrated", bool(self.calibrated))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # frozen: normalized values, set once here

    def with_seed(self) -> PredictionOptions:
        """These options with a fixed seed: ``self`` if it has one, else a copy with a fresh
        random seed (32 random bits).

        Returns
        -------
        PredictionOptions
        """
        if self.seed is not None:
            return self
        return dataclasses.replace(self, seed=check_seed(None))

    def on_device(self, default: torch.device) -> torch.device:
        """The device of this call.

        Parameters
        ----------
        default : `torch.device`
            The device used when ``device`` is None (the estimator's).

        Returns
        -------
        `torch.device`
        """
        return default if self.device is None else self.device


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


def _check_radial_velocity(radial_velocity: Any) -> None:
    if radial_velocity is None:
        return
    if not isinstance(radial_velocity, u.Quantity):
        raise ValueError(
            "radial_velocity must be a Quantity with velocity units "
            f"(e.g. 12.3 * u.km / u.s), got {type(radial_velocity).__name__}"
        )
    if np.ndim(radial_velocity) > 1:
        raise ValueError(
            "radial_velocity must be a scalar or have one value per spectrum, got shape "
            f"{np.shape(radial_velocity)}"
        )
    doppler_factor(radial_velocity)  # velocity unit, finite, slower than light


def _check_progress(progress: Any) -> None:
    if progress is None or isinstance(progress, bool | np.bool_) or callable(progress):
        return
    raise ValueError(
        f"progress must be True, False, None or a callable progress(done, total), "
        f"got {progress!r}"
    )


def _check_snr(snr: Any) -> None:
    """The checks of ``snr`` that do not need the number of spectra."""
    if snr is None:
        return
    if isinstance(snr, str):
        if snr != "estimate":
            raise ValueError(f"snr must be a number, an array or 'estimate', got {snr!r}")
        return
    if isinstance(snr, u.Quantity):
        if not snr.unit.is_equivalent(u.one):
            raise ValueError(f"snr must be dimensionless, got unit {snr.unit}")
        snr = snr.to_value(u.one)
    try:
        arr = np.asarray(snr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"snr must be a number, an array or 'estimate', got {snr!r}") from exc
    if arr.ndim > 1:
        raise ValueError(f"snr must be a scalar or have one value per spectrum, got {arr.shape}")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError("snr must be finite and positive")


def _check_threshold(threshold: Any) -> None:
    if threshold is None:
        return
    if (
        isinstance(threshold, bool)
        or not (is_int(threshold) or isinstance(threshold, float | np.floating))
        or not float(threshold) > 0
        or not np.isfinite(float(threshold))
    ):
        raise ValueError(
            f"fit_chi2_threshold must be a positive finite number, got {threshold!r}"
        )
