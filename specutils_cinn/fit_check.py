"""Goodness of fit: a model's spectrum emulator compared with the spectra it was given.

A model may ship a spectrum emulator (`~specutils_cinn.emulator.SpectrumEmulator`) with a
per-pixel error floor (its error on held-out Turbospectrum spectra). After inference the
estimator emulates each spectrum at its posterior median and reports the reduced chi-square
(``fit_chi2``) and the significance of the stellar features (``feature_sigma``) from
`fit_statistics`; `~specutils_cinn.flags.QualityFlag.POOR_FIT` is set above the model's
threshold, `~specutils_cinn.flags.QualityFlag.NO_FEATURES` below ``FEATURE_SIGMA_MIN`` (5).

The emulated spectrum is broadened the way the model's training spectra were
(`ModelEmulator.macroturbulence`, `ModelEmulator.emulate`): rotated by the predicted
v sin i, and broadened by radial-tangential macroturbulence if the model was trained
with it (`macroturbulence_range`).

This module is longer than the package's usual ~600 lines on purpose: the emulated spectrum,
its broadening rule and the continuum-matched comparison are kept in one place, so that
``fit_chi2``, `emulated_fit` (the plotted comparison), the radial-velocity templates and the
``POOR_FIT`` calibration cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from ._fields import json_copy
from ._files import (
    ModelLoadError,
    build_on_meta,
    check_count,
    check_tensor_specs,
    module_specs,
    parse_safetensors,
    read_verified,
    safetensors_header,
)
from .instruments.rotation import BinnedRotation
from .parameters import emulator_label_values
from .wavelength_grid import WavelengthGrid, pixel_map

if TYPE_CHECKING:
    from .model import EmulatorSpec, ModelMetadata

__all__ = ["FEATURE_SIGMA_MIN", "EmulatedSpectrum", "FitStatistics", "ModelEmulator",
           "emulated_fit", "fit_statistics", "macroturbulence_range", "trim_emulator"]

#: ``NO_FEATURES`` is set where ``feature_sigma`` is below this: the stellar spectrum at the
#: posterior median fits the input no better than a featureless continuum, at 5 sigma.
FEATURE_SIGMA_MIN = 5.0

#: Prefix of the emulator's tensors in the emulator file; the error floor is ``error_floor``.
_EMULATOR_PREFIX = "emulator."
_FLOOR_KEY = "error_floor"
#: The Teff nodes (K) of a Teff-dependent error floor, a tensor of shape ``(k,)``.
_FLOOR_TEFF_KEY = "error_floor_teff"

#: Spectra per emulator call in the goodness-of-fit check.
_FIT_BATCH = 256
#: Fewest pixels a row needs for a ``fit_chi2`` (and per segment, times the polynomial terms).
_MIN_FIT_PIXELS = 20
#: Largest deviation of the continuum correction (a polynomial per segment) from 1, per pixel:
#: the correction absorbs normalization differences of a few percent, but cannot scale the
#: emulated spectrum to an input that is not a normalized spectrum at all (e.g. zero flux).
_CONTINUUM_LIMIT = 0.5


class ModelEmulator:
    r"""A model's spectrum emulator, ready for the goodness-of-fit check.

    Built by `CINNModel.emulator` (from the verified emulator file, with `load`) or
    `CINNModel.attach_emulator`.

    Parameters
    ----------
    spec : EmulatorSpec
        The metadata entry.
    emulator : `~specutils_cinn.emulator.SpectrumEmulator`
        The network; its architecture must equal ``spec.architecture``.
    error_floor : array-like
        The emulator's error per pixel (continuum units): one value, or one per emulator
        pixel, or with ``floor_teff`` one row per Teff node (shape ``(k, npix)``). Added in
        quadrature to the flux uncertainty in the chi-square.
    model_grid : WavelengthGrid
        The model's grid.
    vmacro_range : (float, float), optional
        The radial-tangential macroturbulence range :math:`\zeta` (km/s) the model was trained
        with (`macroturbulence_range` of its metadata; `CINNModel` passes it). None: trained
        without macroturbulence, and the fit check applies none.
    floor_teff : array-like, optional
        Strictly increasing Teff (K) of the ``k >= 2`` rows of ``error_floor``: each spectrum's
        floor variance is interpolated linearly in the Teff it is emulated at
        (`~specutils_cinn.emulator.hat_weights`, constant beyond the end nodes; see
        `floor_variance`). None: one floor for every spectrum.
    normalization : `~specutils_cinn.inputs.Normalization`, optional
        The model's input normalization (`CINNModel` passes it), applied to the emulated
        spectra where ``spec.renormalize`` is set (`renormalized`).

    Attributes
    ----------
    model_index, emulator_index : numpy.ndarray
        Model pixels covered by the emulator and the corresponding emulator pixels.
    fit_pixels : numpy.ndarray
        Boolean over ``model_index``: not inside an ``exclude`` window.
    floor : numpy.ndarray
        Error floor at ``model_index`` (float32), shape ``(n,)``, or ``(k, n)`` with
        ``floor_teff``.
    floor_teff : numpy.ndarray or None
        As the parameter (float64).
    vmacro_range : tuple of two float or None
        As the parameter.
    """

    def __init__(
        self, spec: EmulatorSpec, emulator: torch.nn.Module, error_floor: Any,
        model_grid: WavelengthGrid, *, vmacro_range: Sequence[float] | None = None,
        floor_teff: Any = None, normalization: Any = None,
    ) -> None:
        arch = getattr(emulator, "architecture", None)
        if arch is None or json_copy(arch, "emulator") != spec.architecture:
            raise ValueError(
                "the emulator's architecture differs from metadata emulator.architecture"
            )
        self.spec = spec
        self.emulator = emulator.eval()
        #: The model's input normalization (or None).
        self.normalization = normalization
        npix = spec.grid.npix
        self.floor_teff: np.ndarray | None = None
        if floor_teff is None:
            floor = np.asarray(error_floor, dtype=np.float32).reshape(-1)
            if floor.size == 1:
                floor = np.full(npix, floor[0], np.float32)
            want = f"one or {npix}"
        else:
            from .emulator import teff_nodes

            nodes = teff_nodes(floor_teff, "floor_teff")
            self.floor_teff = nodes
            floor = np.asarray(error_floor, dtype=np.float32)
            want = f"({nodes.size}, {npix})"
        shape = (npix,) if self.floor_teff is None else (self.floor_teff.size, npix)
        if floor.shape != shape or not np.all(np.isfinite(floor)) or np.any(floor < 0):
            raise ValueError(
                f"error_floor must be {want} finite non-negative values, got shape "
                f"{np.shape(error_floor)}"
            )
        self.error_floor = floor
        self.model_index, self.emulator_index = pixel_map(model_grid, spec.grid)
        wave = model_grid.wavelength.value[self.model_index]
        keep = np.ones(wave.size, bool)
        for lo, hi in spec.exclude:
            keep &= ~((wave >= lo) & (wave <= hi))
        self.fit_pixels = keep
        self.floor = floor[..., self.emulator_index]
        seg_of = np.concatenate([np.full(s.npix, i) for i, s in enumerate(model_grid.segments)])
        #: Model segment of each pixel in ``model_index``.
        self.segment = seg_of[self.model_index]
        self.model_grid = model_grid
        if vmacro_range is not None:
            lo, hi = (float(v) for v in vmacro_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi):
                raise ValueError(f"vmacro_range must be two increasing finite non-negative "
                                 f"numbers (km/s), got {vmacro_range!r}")
            vmacro_range = None if hi == 0.0 else (lo, hi)
        self.vmacro_range: tuple[float, float] | None = vmacro_range
        self._rotation: BinnedRotation | None = None

    @classmethod
    def load(
        cls, path: Path, spec: EmulatorSpec, model_grid: WavelengthGrid, *,
        limit: int | None = None, vmacro_range: Sequence[float] | None = None,
        normalization: Any = None,
    ) -> ModelEmulator:
        """Read a model's emulator file, verifying it before it is parsed (no pickle).

        The file holds the tensors of `state_tensors`. Its SHA-256 is checked against
        ``spec.sha256``, and the names, shapes and dtypes in its header against
        ``spec.architecture``, before the emulator is built.

        Parameters
        ----------
        path : pathlib.Path
            The emulator file (`~specutils_cinn.model.EMULATOR_FILENAME` in a model
            directory, ``<full_name>.emulator.safetensors`` as a registry asset).
        spec : EmulatorSpec
            The model metadata's ``emulator`` entry.
        model_grid : WavelengthGrid
            The model's grid.
        limit : int, optional
            Largest file read (bytes); `~specutils_cinn.model.CINNModel` passes
            ``specutils_cinn.model.MAX_WEIGHTS_BYTES``. None: 1 GiB.
        vmacro_range : (float, float), optional
            The model's training macroturbulence range (see `ModelEmulator`).
        normalization : `~specutils_cinn.inputs.Normalization`, optional
            The model's input normalization (see `ModelEmulator`).

        Returns
        -------
        ModelEmulator

        Raises
        ------
        specutils_cinn.model.ModelFileNotFoundError
            If the file is missing.
        specutils_cinn.model.ModelIntegrityError
            If its SHA-256 differs from ``spec.sha256``.
        specutils_cinn.model.ModelLoadError
            If it is too large or its content does not fit ``spec``.
        """
        from .emulator import SpectrumEmulator

        data = read_verified(path, spec.sha256, "emulator file", limit=limit)
        header = safetensors_header(data, path)
        floor_spec = header.pop(_FLOOR_KEY, None)
        if floor_spec is None:
            raise ModelLoadError(f"{path}: no {_FLOOR_KEY!r} tensor")
        teff_spec = header.pop(_FLOOR_TEFF_KEY, None)
        for key in header:
            if not key.startswith(_EMULATOR_PREFIX):
                raise ModelLoadError(f"{path}: unexpected tensor {key!r}")
        npix = spec.grid.npix
        if teff_spec is None:
            if math.prod(floor_spec[0]) not in (1, npix):
                raise ModelLoadError(
                    f"{path}: tensor {_FLOOR_KEY!r} has shape {floor_spec[0]}, expected 1 or "
                    f"{npix} values"
                )
        elif len(teff_spec[0]) != 1 or list(floor_spec[0]) != [teff_spec[0][0], npix]:
            raise ModelLoadError(
                f"{path}: tensors {_FLOOR_KEY!r} and {_FLOOR_TEFF_KEY!r} have shapes "
                f"{floor_spec[0]} and {teff_spec[0]}, expected (k, {npix}) and (k,)"
            )
        hidden = spec.architecture.get("hidden")
        if isinstance(hidden, list):
            check_count(len(hidden), "emulator.architecture.hidden", header, path)
        reference = build_on_meta(
            lambda: SpectrumEmulator.from_architecture(spec.architecture), path
        )
        check_tensor_specs(
            {_EMULATOR_PREFIX + k: v for k, v in module_specs(reference).items()}, header, path
        )
        del reference
        tensors = parse_safetensors(data, path)
        del data
        floor = tensors.pop(_FLOOR_KEY).numpy()
        nodes = tensors.pop(_FLOOR_TEFF_KEY).numpy() if teff_spec is not None else None
        try:
            emu = SpectrumEmulator.from_architecture(spec.architecture)
            emu.load_state_dict(
                {k[len(_EMULATOR_PREFIX):]: v for k, v in tensors.items()}, strict=True
            )
            return cls(spec, emu, floor, model_grid, vmacro_range=vmacro_range,
                       floor_teff=nodes, normalization=normalization)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load the emulator {path}: {exc}") from exc

    @property
    def rotation(self) -> BinnedRotation:
        """Rotational broadening of emulated spectra on the emulator's grid (built once).

        Its ``max_vmacro`` is the top of `vmacro_range` (0 without one, the rotation alone, as
        before models were trained with macroturbulence): called with a ``vmacro`` it also
        applies macroturbulence, in the same FFT pass.
        """
        if self._rotation is None:
            top = 0.0 if self.vmacro_range is None else self.vmacro_range[1]
            self._rotation = BinnedRotation(self.spec.grid, max_shift=0.0, max_vmacro=top)
        return self._rotation

    def macroturbulence(
        self, parameter_names: Sequence[str], values: np.ndarray
    ) -> np.ndarray | None:
        r"""Radial-tangential macroturbulence :math:`\zeta` of the emulated spectra, per row.

        The fit check broadens the emulated spectrum as the model's training spectra were:

        - a model that predicts ``"vmacro"``: each row's value (e.g. its posterior median),
          clipped to ``[0, vmacro_range[1]]``;
        - a model trained with macroturbulence as a nuisance (`vmacro_range` set, ``"vmacro"``
          not a parameter): the midpoint of `vmacro_range` for every row. The network
          marginalized over a uniform :math:`\zeta` in that range, so its posterior carries no
          estimate of a star's :math:`\zeta`; the prior mean is the one value consistent with
          what it learned, and the error floor is calibrated with the same rule
          (`specutils_cinn.calibration.fit_flag`), so the spread of :math:`\zeta` about it is
          part of the floor;
        - otherwise (trained without macroturbulence): None, no macroturbulence.

        Parameters
        ----------
        parameter_names : sequence of str
            The model's parameters.
        values : numpy.ndarray, shape ``(N, n_params)``
            Their values, e.g. posterior medians.

        Returns
        -------
        numpy.ndarray of shape ``(N,)`` or None
            :math:`\zeta` in km/s, within ``[0, rotation.max_vmacro]``; None where the model was
            trained without macroturbulence.
        """
        if self.vmacro_range is None:
            return None
        names = list(parameter_names)
        values = np.asarray(values, dtype=np.float64)
        lo, hi = self.vmacro_range
        if "vmacro" in names:
            return np.clip(values[:, names.index("vmacro")], 0.0, hi)
        return np.full(values.shape[0], 0.5 * (lo + hi))

    def emulate(
        self, parameter_names: Sequence[str], values: np.ndarray, *,
        vsini_max: float | None = None, device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Emulated spectra at parameter values, broadened as in the fit check.

        The emulator's spectrum at `labels` (clamped to its label ranges), rotated by the
        model's v sin i (clipped to ``[0, vsini_max]``) and broadened by the macroturbulence of
        `macroturbulence`.

        Parameters
        ----------
        parameter_names : sequence of str
            The model's parameters.
        values : numpy.ndarray, shape ``(N, n_params)``
            Their values; must be finite.
        vsini_max : float, optional
            Top of v sin i (the training range); None: ``rotation.max_vsini``.
        device : torch.device or str, optional
            Where to compute; None: where the emulator is.

        Returns
        -------
        torch.Tensor, shape ``(N, emulator npix)``
            On the emulator's grid (``spec.grid``), on ``device``.
        """
        labels, vsini = self.labels(parameter_names, values)
        top = self.rotation.max_vsini
        top = top if vsini_max is None else min(vsini_max, top)
        vmacro = self.macroturbulence(parameter_names, values)
        if device is None:
            device = next(self.emulator.parameters()).device
        device = torch.device(device)
        emulator = self.emulator.to(device)
        flux = emulator(torch.as_tensor(labels, dtype=torch.float64, device=device), clamp=True)
        return self.rotation(
            flux, torch.as_tensor(np.clip(vsini, 0.0, top), dtype=torch.float64, device=device),
            vmacro=None if vmacro is None else torch.as_tensor(
                vmacro, dtype=torch.float64, device=device))

    def labels(
        self, parameter_names: Sequence[str], values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Emulator labels (and v sin i) from the model's parameter values.

        Parameters
        ----------
        parameter_names : sequence of str
            The model's parameters.
        values : numpy.ndarray, shape ``(N, n_params)``
            Their values, e.g. posterior medians.

        Returns
        -------
        labels : numpy.ndarray, shape ``(N, n_labels)``
            In the emulator's label order, with the documented defaults (not clipped).
        vsini : numpy.ndarray, shape ``(N,)``
            The model's v sin i, or zeros.
        """
        names = list(parameter_names)
        values = np.asarray(values, dtype=np.float64)
        columns = {name: values[:, names.index(name)] for name in names}
        out = np.empty((values.shape[0], len(self.spec.label_names)))
        # a_li from the predicted [Li/Fe], else the default one (EmulatorSpec.check_model)
        for j, value in enumerate(emulator_label_values(
                self.spec.label_names, columns, self.spec.label_defaults)):
            out[:, j] = value
        vsini = values[:, names.index("vsini")] if "vsini" in names else np.zeros(len(values))
        return out, vsini

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors of the emulator file: ``emulator.<key>``, ``error_floor`` and, for a
        Teff-dependent floor, ``error_floor_teff``."""
        out = {
            _EMULATOR_PREFIX + k: v.detach().to("cpu").contiguous().clone()
            for k, v in self.emulator.state_dict().items()
        }
        out[_FLOOR_KEY] = torch.from_numpy(self.error_floor.copy())
        if self.floor_teff is not None:
            out[_FLOOR_TEFF_KEY] = torch.from_numpy(self.floor_teff.copy())
        return out

    def renormalized(self, model: torch.Tensor, valid: np.ndarray,
                     normalized: np.ndarray | None = None) -> torch.Tensor:
        """Emulated spectra divided by the model's input normalization (``spec.renormalize``).

        Parameters
        ----------
        model : torch.Tensor, shape ``(B, n)``
            Emulated flux over ``model_index`` (normalized to the true continuum).
        valid : numpy.ndarray of bool, shape ``(B, model_grid.npix)``
            The inputs' valid pixels: the continuum is fitted to the emulated spectrum on
            these, as it was to the input.
        normalized : numpy.ndarray of bool, shape ``(B,)``, optional
            Rows whose input was normalized (default all); the others are returned as they
            are.

        Returns
        -------
        torch.Tensor
            Same shape, dtype and device; NaN where the fit failed. ``model`` itself when
            ``spec.renormalize`` is False or the normalization fits no continuum.
        """
        norm = self.normalization
        if not (self.spec.renormalize and norm is not None and norm.fits_continuum):
            return model
        rows = (np.arange(model.shape[0]) if normalized is None
                else np.flatnonzero(np.asarray(normalized, bool)))
        if rows.size == 0:
            return model
        full = np.full((rows.size, self.model_grid.npix), np.nan)
        full[:, self.model_index] = model[torch.as_tensor(rows, device=model.device)].cpu().numpy()
        ok = np.asarray(valid, bool)[rows] & np.isfinite(full)
        f, _, v = norm.apply(full, None, ok, self.model_grid)
        out = model.clone()
        out[torch.as_tensor(rows, device=model.device)] = torch.as_tensor(
            np.where(v, f, np.nan)[:, self.model_index], dtype=model.dtype, device=model.device)
        return out

    def floor_variance(
        self, parameter_names: Sequence[str], values: np.ndarray,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """The squared error floor over ``model_index`` for spectra emulated at ``values``.

        Parameters
        ----------
        parameter_names : sequence of str
            The model's parameters (columns of ``values``).
        values : numpy.ndarray, shape ``(N, n_params)``
            The values the spectra are emulated at (finite).
        device : torch.device or str, optional
            Where the result lives.

        Returns
        -------
        torch.Tensor
            float64; shape ``(n,)`` for one floor, ``(N, n)`` for a Teff-dependent one: the
            node variances interpolated linearly in each row's Teff, constant beyond the end
            nodes.

        Raises
        ------
        ValueError
            If the floor depends on Teff and ``"teff"`` is not a parameter.
        """
        floor2 = torch.as_tensor(self.floor, dtype=torch.float64, device=device) ** 2
        if self.floor_teff is None:
            return floor2
        from .emulator import hat_weights

        names = list(parameter_names)
        if "teff" not in names:
            raise ValueError("the emulator's error floor depends on Teff, which the model does "
                             "not predict")
        teff = np.asarray(values, dtype=np.float64)[:, names.index("teff")]
        w = hat_weights(torch.as_tensor(teff, device=device), self.floor_teff)
        return w @ floor2

    def floor_at(self, parameter_names: Sequence[str], values: np.ndarray) -> np.ndarray:
        """The error floor over ``model_index`` for spectra emulated at ``values``.

        Parameters
        ----------
        parameter_names, values
            As in `floor_variance`.

        Returns
        -------
        numpy.ndarray
            float64, shape ``(N, n)`` (one row per row of ``values``).
        """
        f2 = self.floor_variance(parameter_names, values)
        n = np.asarray(values).shape[0]
        return np.sqrt(np.broadcast_to(f2.numpy(), (n, f2.shape[-1]))).copy()


def macroturbulence_range(metadata: ModelMetadata) -> tuple[float, float] | None:
    """The radial-tangential macroturbulence range a model was trained with, if any.

    Parameters
    ----------
    metadata : `~specutils_cinn.model.ModelMetadata`
        The model's metadata. The training simulator records its macroturbulence in
        ``training["data"]["macroturbulence"]`` (keys ``profile``, ``distribution``,
        ``range``, ``role``; `specutils_cinn.training.EmulatorSimulator`).

    Returns
    -------
    tuple of two float or None
        The recorded ``range`` (km/s); for a model that predicts ``"vmacro"`` without such a
        record, that parameter's training range; None if the model was trained without
        macroturbulence (or the range's top is 0).
    """
    data = metadata.training.get("data") if isinstance(metadata.training, Mapping) else None
    macro = data.get("macroturbulence") if isinstance(data, Mapping) else None
    if isinstance(macro, Mapping) and macro.get("range") is not None:
        lo, hi = (float(v) for v in macro["range"])
    elif "vmacro" in metadata.parameter_names:
        lo, hi = (float(v) for v in metadata.ranges[metadata.parameter_names.index("vmacro")])
        lo = max(lo, 0.0)
    else:
        return None
    return (lo, hi) if hi > 0 else None


def trim_emulator(emulator: torch.nn.Module, model_grid: WavelengthGrid) -> torch.nn.Module:
    """A copy of a `~specutils_cinn.emulator.SpectrumEmulator` restricted to a model's pixels.

    Parameters
    ----------
    emulator : SpectrumEmulator
        The emulator.
    model_grid : WavelengthGrid
        The model's grid; emulator pixels whose centers are not model pixels are dropped.

    Returns
    -------
    SpectrumEmulator
        Same network, basis and mean flux at the shared pixels only, on a grid of one segment
        per contiguous run of shared pixels (named after the emulator's segment). The emulated
        flux at a kept pixel is unchanged.

    Raises
    ------
    ValueError
        If the grids share no pixel.
    """
    from .emulator import SpectrumEmulator
    from .wavelength_grid import GridSegment

    _, idx = pixel_map(model_grid, emulator.grid)
    if idx.size == 0:
        raise ValueError("the emulator has no pixel in common with the model's grid")
    segs = []
    for seg, sl in zip(emulator.grid.segments, emulator.grid.segment_slices, strict=True):
        local = idx[(idx >= sl.start) & (idx < sl.stop)] - sl.start
        if local.size == 0:
            continue
        if np.any(np.diff(local) != 1):
            raise ValueError(f"shared pixels of emulator segment {seg.name!r} are not contiguous")
        segs.append(GridSegment(seg.name, float(seg.centers[local[0]]),
                                float(seg.centers[local[-1]]), seg.step))
    grid = WavelengthGrid(tuple(segs), emulator.grid.medium)
    out = SpectrumEmulator.from_architecture(
        dict(emulator.architecture, npix=grid.npix, grid=grid.to_dict()))
    state = emulator.state_dict()
    t = torch.from_numpy(idx)
    state["basis"] = state["basis"][:, t].clone()
    state["flux_mean"] = state["flux_mean"][t].clone()
    out.load_state_dict(state, strict=True)
    out.metadata = dict(getattr(emulator, "metadata", {}) or {})
    return out.eval()


class FitStatistics(NamedTuple):
    """Goodness of fit of spectra against their emulated spectra (see `fit_statistics`)."""

    #: Reduced chi-square against the emulated spectrum, shape ``(N,)``.
    chi2: np.ndarray
    #: Significance (standard deviations) of the stellar features, shape ``(N,)``.
    feature_sigma: np.ndarray
    #: Residual RMS the noise and the emulator error do not explain (continuum units),
    #: ``sqrt(max(mean(r**2) - mean(sigma**2 + floor**2), 0))`` over the pixels of ``chi2``:
    #: an estimate of how far the spectrum is from the model's physics, independent of S/N.
    mismatch: np.ndarray | None = None


def fit_statistics(
    fe: ModelEmulator,
    parameters: Sequence[str],
    median: np.ndarray,
    flux: np.ndarray,
    sigma: np.ndarray,
    valid: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    vsini_max: float | None = None,
    normalized: np.ndarray | None = None,
) -> FitStatistics:
    """Goodness of fit of spectra against the emulated spectrum at their posterior medians.

    The emulator gives the spectrum at ``median`` (`ModelEmulator.emulate`: rotated by the
    model's v sin i, if it has one, and broadened by macroturbulence as in training,
    `ModelEmulator.macroturbulence`); with ``fe.spec.renormalize`` it is divided by the
    model's input normalization where the input was normalized (`ModelEmulator.renormalized`);
    per model segment it is multiplied by a weighted
    least-squares polynomial (degree ``fe.spec.continuum_degree``, limited to within 0.5 of 1)
    to absorb normalization differences, and
    ``chi2 = mean((f - P f_emu)**2 / (sigma**2 + floor**2))`` over the valid pixels the
    emulator covers, outside the excluded windows.

    The same fit with a featureless model (the polynomial alone) gives
    ``chi2_flat``; ``feature_sigma = sqrt(max(n * (chi2_flat - chi2), 0))`` over the ``n``
    pixels used is the significance, in standard deviations, with which the input shows the
    stellar features of the emulated spectrum. On the bundled models' validation pages a flat
    continuum with noise stays below `FEATURE_SIGMA_MIN` and no held-out synthetic star does
    (S/N 10-250).

    Parameters
    ----------
    fe : ModelEmulator
        The model's emulator.
    parameters : sequence of str
        The model's parameter names (columns of ``median``).
    median : numpy.ndarray, shape ``(N, n_params)``
        Posterior medians; rows with a non-finite value get NaN.
    flux, sigma, valid : numpy.ndarray, shape ``(N, npix)``
        The prepared (normalized, resampled) spectra on the model grid.
    device : torch.device or str
        Where to compute.
    vsini_max : float, optional
        Clip v sin i to ``[0, vsini_max]`` (the training range).
    normalized : numpy.ndarray of bool, shape ``(N,)``, optional
        Rows whose input was continuum normalized
        (`~specutils_cinn.inputs.PreparedSpectra` ``normalized``; default all).

    Returns
    -------
    FitStatistics
        ``chi2`` (reduced chi-square), ``feature_sigma`` and ``mismatch``, each of shape
        ``(N,)``; NaN where no row was fitted or too few pixels were usable.
    """
    device = torch.device(device)
    out = np.full(len(median), np.nan)
    sig_out = np.full(len(median), np.nan)
    mis_out = np.full(len(median), np.nan)
    rows_all = np.flatnonzero(np.isfinite(median).all(axis=1))
    if rows_all.size == 0:
        return FitStatistics(out, sig_out, mis_out)
    basis = _segment_bases(fe, device)
    fit_pix = torch.as_tensor(fe.fit_pixels, device=device)
    m_idx = torch.as_tensor(fe.model_index, device=device)
    e_idx = torch.as_tensor(fe.emulator_index, device=device)
    with torch.inference_mode():
        for start in range(0, rows_all.size, _FIT_BATCH):
            sel = slice(start, start + _FIT_BATCH)
            rows = rows_all[sel]
            emu_flux = fe.emulate(parameters, median[rows], vsini_max=vsini_max, device=device)
            model = fe.renormalized(emu_flux[:, e_idx].to(torch.float64), valid[rows],
                                    None if normalized is None else normalized[rows])
            obs = torch.from_numpy(flux[rows]).to(device)[:, m_idx].to(torch.float64)
            sig = torch.from_numpy(sigma[rows]).to(device)[:, m_idx]
            use = torch.from_numpy(valid[rows]).to(device)[:, m_idx] & fit_pix
            use &= torch.isfinite(model)
            model = torch.nan_to_num(model)
            floor2 = fe.floor_variance(parameters, median[rows], device)
            var = _fit_variance(fe, sig.to(torch.float64), use, basis) + floor2
            num, count, excess = _continuum_matched_sums(obs, model, var, use, basis)
            flat, _, _ = _continuum_matched_sums(obs, torch.ones_like(model), var, use, basis)
            ok = count >= _MIN_FIT_PIXELS
            nan = torch.full_like(num, float("nan"))
            out[rows] = torch.where(ok, num / count, nan).cpu().numpy()
            significance = torch.sqrt((flat - num).clamp_min(0.0))
            sig_out[rows] = torch.where(ok, significance, nan).cpu().numpy()
            mismatch = torch.sqrt((excess / count.clamp_min(1.0)).clamp_min(0.0))
            mis_out[rows] = torch.where(ok, mismatch, nan).cpu().numpy()
    return FitStatistics(out, sig_out, mis_out)


class EmulatedSpectrum(NamedTuple):
    """An observed spectrum and its emulated counterpart on a model's grid (see
    `~specutils_cinn.CINNParameterEstimator.emulated_spectrum`)."""

    #: Wavelengths of the model's pixels (`~astropy.units.Quantity`), shape ``(npix,)``.
    wavelength: Any
    #: The observed flux as the network saw it: resampled to the model grid, shifted to the
    #: rest frame and continuum normalized; NaN where there is no valid data.
    flux: np.ndarray
    #: Its uncertainty (same convention); NaN where there is no valid data.
    uncertainty: np.ndarray
    #: The spectrum emulated at the given parameters, times the continuum polynomial per
    #: segment that ``fit_chi2`` uses; NaN where the emulator does not cover the model grid.
    emulated: np.ndarray
    #: True where a pixel does not enter ``fit_chi2``: no valid data, not covered by the
    #: emulator, or in an excluded window (e.g. the Li lines).
    mask: np.ndarray
    #: The emulator's own error per pixel (continuum units); NaN where it does not cover.
    error_floor: np.ndarray


def emulated_fit(
    fe: ModelEmulator,
    parameters: Sequence[str],
    values: np.ndarray,
    flux: np.ndarray,
    sigma: np.ndarray,
    valid: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    vsini_max: float | None = None,
    normalized: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The continuum-matched emulated spectra that `fit_statistics` compares with the input.

    Parameters
    ----------
    fe : ModelEmulator
        The model's emulator.
    parameters : sequence of str
        The model's parameter names (columns of ``values``).
    values : numpy.ndarray, shape ``(N, n_params)``
        Parameter values, e.g. posterior medians; must be finite.
    flux, sigma, valid : numpy.ndarray, shape ``(N, npix)``
        The prepared spectra on the model grid.
    device : torch.device or str
        Where to compute.
    vsini_max : float, optional
        Clip v sin i to ``[0, vsini_max]``.
    normalized : numpy.ndarray of bool, shape ``(N,)``, optional
        As in `fit_statistics`.

    Returns
    -------
    emulated : numpy.ndarray, shape ``(N, npix)``
        The emulated spectrum times the continuum polynomial per segment (fitted as in
        `fit_statistics`); NaN at model pixels the emulator does not cover.
    used : numpy.ndarray of bool, shape ``(N, npix)``
        The pixels that enter ``fit_chi2``.
    """
    device = torch.device(device)
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("parameter values must be finite")
    n, npix = flux.shape
    emulated = np.full((n, npix), np.nan)
    used = np.zeros((n, npix), bool)
    floor2 = fe.floor_variance(parameters, values, device)
    fit_pix = torch.as_tensor(fe.fit_pixels, device=device)
    with torch.inference_mode():
        emu = fe.emulate(parameters, values, vsini_max=vsini_max, device=device)
        model = fe.renormalized(
            emu[:, torch.as_tensor(fe.emulator_index, device=device)].to(torch.float64),
            valid, normalized)
        m_idx = torch.as_tensor(fe.model_index, device=device)
        obs = torch.from_numpy(np.ascontiguousarray(flux)).to(device)[:, m_idx].double()
        sig = torch.from_numpy(np.ascontiguousarray(sigma)).to(device)[:, m_idx].double()
        use = torch.from_numpy(np.ascontiguousarray(valid)).to(device)[:, m_idx] & fit_pix
        use &= torch.isfinite(model)
        bases = _segment_bases(fe, device)
        w = use.to(torch.float64) / (_fit_variance(fe, sig, use, bases) + floor2)
        obs = torch.nan_to_num(obs)
        w = torch.nan_to_num(w)
        out = torch.full_like(model, float("nan"))
        for cols, phi in bases:
            poly = _continuum_polynomial(w[:, cols], obs[:, cols],
                                         torch.nan_to_num(model[:, cols]), phi)
            out[:, cols] = model[:, cols] * poly
    emulated[:, fe.model_index] = out.cpu().numpy()
    used[:, fe.model_index] = use.cpu().numpy()
    return emulated, used


def _fit_variance(fe: ModelEmulator, sig: torch.Tensor, use: torch.Tensor,
                  bases: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The noise variance the chi-square divides by, ``[B, n]`` over ``fe.model_index``.

    ``sig**2`` where ``fe.spec.noise_window`` is 0; otherwise, at used pixels, the mean of
    ``sig**2`` over the used pixels within ``noise_window // 2`` columns in the same model
    segment (the columns of each of `_segment_bases`; `~specutils_cinn.model.EmulatorSpec`);
    other pixels keep ``sig**2``.
    """
    var = sig**2
    window = fe.spec.noise_window
    if not window:
        return var
    half = window // 2
    out = var.clone()
    w = use.to(var.dtype)
    x = torch.where(use, var, torch.zeros((), dtype=var.dtype, device=var.device))
    zero = torch.zeros(var.shape[0], 1, dtype=var.dtype, device=var.device)
    for cols, _ in bases:
        n = cols.numel()
        sx = torch.cat([zero, x[:, cols].cumsum(1)], dim=1)
        sw = torch.cat([zero, w[:, cols].cumsum(1)], dim=1)
        i = torch.arange(n, device=var.device)
        hi, lo = (i + half + 1).clamp(max=n), (i - half).clamp(min=0)
        mean = (sx[:, hi] - sx[:, lo]) / (sw[:, hi] - sw[:, lo]).clamp_min(1.0)
        out[:, cols] = torch.where(use[:, cols], mean, var[:, cols])
    return out


def _segment_bases(
    fe: ModelEmulator, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(column indices into ``fe.model_index``, Legendre basis [n, K]) per model segment."""
    from numpy.polynomial import legendre

    out = []
    wave = fe.model_grid.wavelength.value[fe.model_index]
    for k, seg in enumerate(fe.model_grid.segments):
        cols = np.flatnonzero(fe.segment == k)
        if cols.size == 0:
            continue
        x = 2.0 * (wave[cols] - seg.start) / (seg.stop - seg.start) - 1.0
        phi = legendre.legvander(x, fe.spec.continuum_degree)
        out.append((torch.as_tensor(cols, device=device),
                    torch.as_tensor(phi, dtype=torch.float64, device=device)))
    return out


def _continuum_polynomial(
    ws: torch.Tensor, ys: torch.Tensor, ms: torch.Tensor, phi: torch.Tensor
) -> torch.Tensor:
    """[B, n] polynomial (basis ``phi`` [n, K]) that best scales ``ms`` to ``ys`` with weights
    ``ws``, by weighted least squares, clipped to within `_CONTINUUM_LIMIT` of 1."""
    k = phi.shape[1]
    # normal equations as matrix products (no [B, n, K] temporaries):
    # a_kl = sum_n w m^2 phi_k phi_l, b_k = sum_n w m y phi_k
    outer = (phi[:, :, None] * phi[:, None, :]).reshape(phi.shape[0], k * k)
    a = ((ws * ms * ms) @ outer).reshape(-1, k, k)
    b = (ws * ms * ys) @ phi
    ridge = 1e-10 * a.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-300) / k
    a = a + ridge[:, None, None] * torch.eye(k, dtype=a.dtype, device=a.device)
    coef = torch.linalg.solve(a, b)
    return (coef @ phi.T).clamp(1.0 - _CONTINUUM_LIMIT, 1.0 + _CONTINUUM_LIMIT)


def _continuum_matched_sums(
    obs: torch.Tensor,
    model: torch.Tensor,
    var: torch.Tensor,
    use: torch.Tensor,
    bases: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chi-square, number of pixels used and the summed excess ``r**2 - var``, after
    multiplying ``model`` by a polynomial per segment, fitted by weighted least squares, its
    values clipped to within `_CONTINUUM_LIMIT` of 1; segments with too few used pixels are
    left out."""
    w = use.to(torch.float64) / var
    num = torch.zeros(obs.shape[0], dtype=torch.float64, device=obs.device)
    count = torch.zeros_like(num)
    excess = torch.zeros_like(num)
    for cols, phi in bases:
        k = phi.shape[1]
        ws, ys, ms = w[:, cols], obs[:, cols], model[:, cols]
        poly = _continuum_polynomial(ws, ys, ms, phi)
        resid = ys - ms * poly
        n_used = use[:, cols].sum(dim=1).to(torch.float64)
        enough = n_used >= max(_MIN_FIT_PIXELS, 5 * k)
        num += torch.where(enough, (ws * resid**2).sum(dim=1), 0.0)
        count += torch.where(enough, n_used, 0.0)
        used = use[:, cols]
        extra = torch.where(used, resid**2 - var[:, cols], 0.0).sum(dim=1)
        excess += torch.where(enough, extra, 0.0)
    return num, count, excess
