"""The metadata of a model: `ModelMetadata`, the schema of ``metadata.json`` (format 1).

Everything needed to rebuild and use a trained model apart from its weights: parameters,
architecture, wavelength grid, resolving power, normalization, S/N range, provenance, and the
optional emulator, posterior calibration and mask of poorly modeled pixels. Validated on
construction; every invalid field raises a `ValueError` naming it (a
`~specutils_cinn.model.ModelLoadError` when read from a file).

This module is slightly longer than the package's usual ~600 lines: `ModelMetadata` is one
schema, validated field by field with an error that names the field; a third of it is
documentation.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from astropy import units as u
from packaging.version import InvalidVersion, Version

from .._fields import as_float, as_pair, field_error, json_copy
from .._files import ModelLoadError, atomic_write, read_limited
from .._hashing import is_sha256
from ..calibration import PosteriorCalibration
from ..inputs.normalization import Normalization
from ..inputs.pixel_mask import PixelMask
from ..wavelength_grid import WavelengthGrid
from .identity import validate_model_name
from .specs import MAX_PIXELS, EmulatorSpec, ParameterSpec

__all__ = ["FORMAT_VERSION", "MAX_METADATA_BYTES", "ModelMetadata"]

#: Version of the metadata schema written by this package.
FORMAT_VERSION: int = 1
#: Largest ``metadata.json`` read (bytes); a larger file is refused with a `ModelLoadError`.
MAX_METADATA_BYTES: int = 1 << 20

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _package_version() -> str:
    from .. import __version__

    return str(__version__)


_REQUIRED = (
    "format_version",
    "name",
    "version",
    "parameters",
    "architecture",
    "wavelength_grid",
    "resolving_power",
    "normalization",
    "snr_range",
)
_OPTIONAL = (
    "description",
    "training",
    "weights_sha256",
    "package_version",
    "emulator",
    "posterior_calibration",
    "unconstrained",
    "pixel_mask",
)


@dataclass(frozen=True)
class ModelMetadata:
    """Everything needed to rebuild and use a trained model, apart from its weights.

    Instances are validated on construction. The JSON form (`to_dict`,
    `to_json`) is the ``metadata.json`` file of a model, format version 1.

    Parameters
    ----------
    name : str
        Model name without version, e.g. ``"4most-hr-lte-seed"``.
    version : str
        Model version (PEP 440), e.g. ``"0.1.0"``.
    parameters : sequence of ParameterSpec
        The predicted parameters, in network order.
    architecture : dict
        ``ConditionalINN.architecture``: the arguments of
        `specutils_cinn.flows.build_cinn`. Its ``n_params`` must equal the number of
        parameters and its ``npix`` the number of grid pixels.
    grid : WavelengthGrid
        The input wavelength grid (``"wavelength_grid"`` in JSON).
    resolving_power : float or dict
        Resolving power of the training spectra, one value or one per grid segment name.
    normalization : `~specutils_cinn.inputs.Normalization` or dict
        How the input flux must be normalized (a dict is read with
        `~specutils_cinn.inputs.Normalization.from_dict`: a string ``"kind"``, optionally
        ``"degree"`` and ``"n_iter"``, e.g. ``{"kind": "continuum"}``).
    snr_range : tuple of float
        ``(low, high)`` S/N per Angstrom seen in training.
    description : str, optional
        One-line human-readable description.
    training : dict, optional
        Free-form JSON-serializable provenance (data, epochs, seed, metrics, ...).
    weights_sha256 : str or None, optional
        SHA-256 hex digest of the weights file; `CINNModel.save` fills it in.
    package_version : str, optional
        Version of specutils-cinn that wrote the model (default: the running one).
    format_version : int, optional
        Metadata schema version; only `FORMAT_VERSION` is supported.
    emulator : EmulatorSpec or dict or None, optional
        The spectrum emulator shipped with the model for the goodness-of-fit check
        (``fit_chi2`` and ``POOR_FIT``); None (the default) for a model without one.
    posterior_calibration : PosteriorCalibration or dict or None, optional
        Widening of the posterior draws applied by the estimator (see
        :ref:`posterior-calibration`); None (the default) leaves the network's draws as
        they are.
    unconstrained : sequence of str, optional
        Parameters the model predicts but its spectra do not constrain (their posterior is
        the training prior on held-out synthetic stars). The estimator masks their columns
        and names them in ``table.meta["UNCONSTR"]``. Empty by default.
    pixel_mask : `~specutils_cinn.inputs.PixelMask` or dict or None, optional
        Wavelength intervals of pixels the model's training physics reproduces poorly: the
        estimator treats them as pixels without data and does not count them in a spectrum's
        coverage, and training masked them in every spectrum (`masked_pixels`). Part of
        ``metadata.json``, so covered by its SHA-256 and the model digest. None (the default)
        masks nothing; the key is then absent from the JSON.

    Raises
    ------
    ValueError
        If a field is invalid; the message names the field.
    """

    name: str
    version: str
    parameters: tuple[ParameterSpec, ...]
    architecture: dict[str, Any]
    grid: WavelengthGrid
    resolving_power: float | dict[str, float]
    normalization: Normalization
    snr_range: tuple[float, float]
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None
    package_version: str = field(default_factory=_package_version)
    format_version: int = FORMAT_VERSION
    emulator: EmulatorSpec | None = None
    posterior_calibration: PosteriorCalibration | None = None
    unconstrained: tuple[str, ...] = ()
    pixel_mask: PixelMask | None = None

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field, normalizing containers to their canonical types.

        Raises
        ------
        ValueError
            Naming the first invalid field.
        """
        fv = self.format_version
        if isinstance(fv, bool) or not isinstance(fv, int):
            raise field_error("format_version", f"expected an integer, got {fv!r}")
        if fv != FORMAT_VERSION:
            hint = " (upgrade specutils-cinn)" if fv > FORMAT_VERSION else ""
            raise field_error(
                "format_version",
                f"unsupported version {fv}; this package reads {FORMAT_VERSION}{hint}",
            )
        try:
            validate_model_name(self.name)
        except ValueError as exc:
            raise field_error("name", str(exc)) from None
        if not isinstance(self.version, str):
            raise field_error("version", f"expected a string, got {self.version!r}")
        try:
            Version(self.version)
        except InvalidVersion:
            raise field_error("version", f"not a PEP 440 version: {self.version!r}") from None
        if not isinstance(self.description, str):
            raise field_error("description", f"expected a string, got {self.description!r}")

        params = self.parameters
        if isinstance(params, (str, bytes)) or not isinstance(params, Sequence) or not params:
            raise field_error("parameters", f"expected a non-empty list, got {params!r}")
        for i, p in enumerate(params):
            if not isinstance(p, ParameterSpec):
                raise field_error(f"parameters[{i}]", f"expected a ParameterSpec, got {p!r}")
        names = [p.name for p in params]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise field_error("parameters", f"duplicate parameter names {dupes}")
        object.__setattr__(self, "parameters", tuple(params))

        if not isinstance(self.grid, WavelengthGrid):
            raise field_error("wavelength_grid", f"expected a WavelengthGrid, got {self.grid!r}")
        if self.grid.npix > MAX_PIXELS:
            raise field_error(
                "wavelength_grid", f"{self.grid.npix} pixels, more than {MAX_PIXELS:,}"
            )

        arch = self.architecture
        if not isinstance(arch, Mapping):
            raise field_error("architecture", f"expected an object, got {arch!r}")
        arch = json_copy(dict(arch), "architecture")
        from ..flows import ARCHITECTURE_KEYS

        missing = [k for k in ARCHITECTURE_KEYS if k not in arch]
        unknown = sorted(k for k in arch if k not in ARCHITECTURE_KEYS)
        if missing or unknown:
            raise field_error(
                "architecture",
                f"missing keys {missing}, unknown keys {unknown}; "
                f"expected {list(ARCHITECTURE_KEYS)}",
            )
        n_params = arch["n_params"]
        if n_params != len(params):
            raise field_error(
                "architecture",
                f"n_params = {n_params!r} but there are {len(params)} parameters",
            )
        npix = arch["npix"]
        if npix != self.grid.npix:
            raise field_error(
                "architecture",
                f"npix = {npix!r} but the wavelength grid has {self.grid.npix} pixels",
            )
        object.__setattr__(self, "architecture", arch)

        rp = self.resolving_power
        segments = [s.name for s in self.grid.segments]
        if isinstance(rp, Mapping):
            if sorted(rp) != sorted(segments):
                raise field_error(
                    "resolving_power",
                    f"keys {sorted(rp)} must be the grid segment names {segments}",
                )
            rp = {k: _segment_resolving_power(rp[k], k) for k in segments}
        else:
            rp = as_float(rp, "resolving_power")
            if rp <= 0:
                raise field_error("resolving_power", f"must be positive, got {rp}")
        object.__setattr__(self, "resolving_power", rp)

        norm = self.normalization
        if not isinstance(norm, Normalization):
            norm = Normalization.from_dict(norm)  # the error names the field
        object.__setattr__(self, "normalization", norm)

        if not isinstance(self.training, Mapping):
            raise field_error("training", f"expected an object, got {self.training!r}")
        object.__setattr__(self, "training", json_copy(dict(self.training), "training"))

        snr = as_pair(self.snr_range, "snr_range")
        if snr[0] < 0:
            raise field_error("snr_range", f"must be non-negative, got {list(snr)}")
        object.__setattr__(self, "snr_range", snr)

        sha = self.weights_sha256
        if sha is not None and not is_sha256(sha):
            raise field_error(
                "weights_sha256", f"expected 64 lower-case hex digits or null, got {sha!r}"
            )
        if not isinstance(self.package_version, str):
            raise field_error("package_version", f"expected a string, got {self.package_version!r}")
        emu = self.emulator
        if emu is not None:
            if isinstance(emu, Mapping):
                emu = EmulatorSpec.from_dict(emu)
            if not isinstance(emu, EmulatorSpec):
                raise field_error("emulator", f"expected an object or null, got {emu!r}")
            emu.check_model(self)
            object.__setattr__(self, "emulator", emu)
        cal = self.posterior_calibration
        if cal is not None:
            if isinstance(cal, Mapping):
                try:
                    cal = PosteriorCalibration.from_dict(cal)
                except ValueError as exc:
                    raise field_error("posterior_calibration", str(exc)) from None
            if not isinstance(cal, PosteriorCalibration):
                raise field_error(
                    "posterior_calibration", f"expected an object or null, got {cal!r}"
                )
            unknown = sorted(set(cal.parameters) - {p.name for p in self.parameters})
            if unknown:
                raise field_error(
                    "posterior_calibration", f"parameters {unknown} are not predicted"
                )
            json_copy(cal.info, "posterior_calibration.info")
            object.__setattr__(self, "posterior_calibration", cal)
        unc = self.unconstrained
        if isinstance(unc, str) or not isinstance(unc, Sequence) or not all(
                isinstance(x, str) for x in unc):
            raise field_error("unconstrained", f"expected a list of parameter names, got {unc!r}")
        unknown = sorted(set(unc) - {p.name for p in self.parameters})
        if unknown:
            raise field_error("unconstrained", f"parameters {unknown} are not predicted")
        object.__setattr__(self, "unconstrained", tuple(unc))
        mask = self.pixel_mask
        if mask is not None:
            if isinstance(mask, Mapping):
                try:
                    mask = PixelMask.from_dict(mask)
                except ValueError as exc:
                    raise field_error("pixel_mask", str(exc)) from None
            if not isinstance(mask, PixelMask):
                raise field_error("pixel_mask", f"expected an object or null, got {mask!r}")
            if mask.on_grid(self.grid).all():
                raise field_error("pixel_mask", "masks every pixel of the wavelength grid")
            object.__setattr__(self, "pixel_mask", mask)

    # ------------------------------------------------------------------ derived values
    @property
    def full_name(self) -> str:
        """``"<name>-v<version>"``, the name used by the registry and for files."""
        return f"{self.name}-v{self.version}"

    @property
    def n_params(self) -> int:
        """Number of predicted parameters."""
        return len(self.parameters)

    @property
    def parameter_names(self) -> list[str]:
        """Parameter names in network order."""
        return [p.name for p in self.parameters]

    @property
    def units(self) -> list[u.UnitBase]:
        """Astropy unit of each parameter, in network order."""
        return [p.unit for p in self.parameters]

    @property
    def ranges(self) -> np.ndarray:
        """Training label ranges as a float64 array of shape ``[n_params, 2]``."""
        return np.array([p.range for p in self.parameters], dtype=np.float64)

    @property
    def masked_pixels(self) -> np.ndarray | None:
        """The pixels of `pixel_mask` on the model grid (boolean, ``[npix]``; None: no mask)."""
        return None if self.pixel_mask is None else self.pixel_mask.on_grid(self.grid)

    @property
    def label_mean(self) -> np.ndarray:
        """Standardization means, float64 array of shape ``[n_params]``."""
        return np.array([p.mean for p in self.parameters], dtype=np.float64)

    @property
    def label_std(self) -> np.ndarray:
        """Standardization scales, float64 array of shape ``[n_params]``."""
        return np.array([p.std for p in self.parameters], dtype=np.float64)

    def standardize(self, params: ArrayT) -> ArrayT:
        """Map physical parameter values to the network's standardized space.

        Parameters
        ----------
        params : numpy.ndarray or torch.Tensor
            Values with the parameters along the last axis (length ``n_params``).

        Returns
        -------
        numpy.ndarray or torch.Tensor
            ``(params - mean) / std``, of the input's kind (tensors keep dtype and device).

        Raises
        ------
        ValueError
            If the last axis does not have length ``n_params``.
        """
        mean, std = self._constants_like(params)
        return (params - mean) / std

    def destandardize(self, values: ArrayT) -> ArrayT:
        """Inverse of `standardize`: ``values * std + mean``.

        Parameters
        ----------
        values : numpy.ndarray or torch.Tensor
            Standardized values with the parameters along the last axis.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Physical values, of the input's kind.

        Raises
        ------
        ValueError
            If the last axis does not have length ``n_params``.
        """
        mean, std = self._constants_like(values)
        return values * std + mean

    def _constants_like(self, x: Any) -> tuple[Any, Any]:
        shape = tuple(x.shape) if hasattr(x, "shape") else ()
        if not shape or shape[-1] != self.n_params:
            raise ValueError(
                f"expected the last axis to hold the {self.n_params} parameters "
                f"{self.parameter_names}, got shape {shape}"
            )
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            return (
                torch.as_tensor(self.label_mean, dtype=dtype, device=x.device),
                torch.as_tensor(self.label_std, dtype=dtype, device=x.device),
            )
        return self.label_mean, self.label_std

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serializable metadata (format version 1).

        Returns
        -------
        dict
            A fresh dictionary; modifying it does not affect this object.
        """
        rp = self.resolving_power
        out = {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "parameters": [p.to_dict() for p in self.parameters],
            "architecture": copy.deepcopy(self.architecture),
            "wavelength_grid": self.grid.to_dict(),
            "resolving_power": dict(rp) if isinstance(rp, dict) else rp,
            "normalization": self.normalization.to_dict(),
            "training": copy.deepcopy(self.training),
            "snr_range": [self.snr_range[0], self.snr_range[1]],
            "weights_sha256": self.weights_sha256,
            "package_version": self.package_version,
        }
        if self.emulator is not None:  # absent key: metadata of models without one is unchanged
            out["emulator"] = self.emulator.to_dict()
        if self.posterior_calibration is not None:
            out["posterior_calibration"] = self.posterior_calibration.to_dict()
        if self.unconstrained:
            out["unconstrained"] = list(self.unconstrained)
        if self.pixel_mask is not None:
            out["pixel_mask"] = self.pixel_mask.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelMetadata:
        """Build and validate metadata from the output of `to_dict`.

        Parameters
        ----------
        d : dict
            The metadata.

        Returns
        -------
        ModelMetadata

        Raises
        ------
        ValueError
            If a key is missing or unknown or a value is invalid; the message names the field.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"model metadata must be a JSON object, got {type(d).__name__}")
        for key in _REQUIRED:
            if key not in d:
                raise field_error(key, "missing")
        unknown = sorted(set(d) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise field_error(unknown[0], "unknown key")
        # Check the schema version first: other fields may mean something else in it.
        fv = d["format_version"]
        if isinstance(fv, bool) or not isinstance(fv, int) or fv != FORMAT_VERSION:
            raise field_error(
                "format_version",
                f"unsupported value {fv!r}; this package reads {FORMAT_VERSION}",
            )
        params = d["parameters"]
        if not isinstance(params, list):
            raise field_error("parameters", f"expected a list, got {params!r}")
        specs = tuple(ParameterSpec.from_dict(p, i) for i, p in enumerate(params))
        grid_d = d["wavelength_grid"]
        if not isinstance(grid_d, Mapping):
            raise field_error("wavelength_grid", f"expected an object, got {grid_d!r}")
        try:
            grid = WavelengthGrid.from_dict(dict(grid_d))
        except ValueError as exc:
            raise field_error("wavelength_grid", str(exc)) from exc
        kwargs: dict[str, Any] = {}
        for key in _OPTIONAL:
            if key in d:
                kwargs[key] = d[key]
        return cls(
            name=d["name"],
            version=d["version"],
            parameters=specs,
            architecture=d["architecture"],
            grid=grid,
            resolving_power=d["resolving_power"],
            normalization=d["normalization"],
            snr_range=d["snr_range"],
            format_version=fv,
            **kwargs,
        )

    def to_json(self, indent: int | None = 2) -> str:
        """Serialize to strict JSON text (no NaN or infinity), ending with a newline.

        Parameters
        ----------
        indent : int or None, optional
            Indentation passed to ``json.dumps``.

        Returns
        -------
        str
        """
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        """Parse metadata from JSON text.

        Parameters
        ----------
        text : str or bytes
            The content of a ``metadata.json`` file.

        Returns
        -------
        ModelMetadata

        Raises
        ------
        ValueError
            If the text is not valid JSON or the metadata is invalid.
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model metadata is not valid JSON: {exc}") from exc
        return cls.from_dict(d)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ModelMetadata:
        """Read metadata from a JSON file.

        Parameters
        ----------
        path : str or os.PathLike
            The file.

        Returns
        -------
        ModelMetadata

        Raises
        ------
        ModelFileNotFoundError
            If the file does not exist.
        ModelLoadError
            If the file is larger than `MAX_METADATA_BYTES` or not valid metadata; the
            message names the file and the field.
        """
        data = read_limited(
            Path(path), MAX_METADATA_BYTES, "metadata file",
            "specutils_cinn.model.metadata.MAX_METADATA_BYTES",
        )
        return cls._parse_file(data, path)

    @classmethod
    def _parse_file(cls, data: bytes, path: str | os.PathLike[str]) -> ModelMetadata:
        try:
            return cls.from_json(data)
        except (ValueError, RecursionError) as exc:
            raise ModelLoadError(f"{os.fspath(path)}: {exc}") from exc

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the metadata as JSON, atomically (temporary file then rename).

        Parameters
        ----------
        path : str or os.PathLike
            Destination file.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        path = Path(path)
        atomic_write(path, self.to_json().encode("utf-8"))
        return path

    def replace(self, **changes: Any) -> ModelMetadata:
        """Return a validated copy with some fields changed.

        Parameters
        ----------
        **changes
            Field names and new values, as for ``dataclasses.replace``.

        Returns
        -------
        ModelMetadata
        """
        return dataclasses.replace(self, **changes)


def _segment_resolving_power(value: Any, segment: str) -> float | dict[str, Any]:
    """A positive number, or a wavelength-dependent form such as
    ``{"kind": "linear", "wavelength": [w0, w1], "resolving_power": [r0, r1]}``
    (see `specutils_cinn.instruments.LinearResolvingPower`)."""
    where = f"resolving_power[{segment!r}]"
    if isinstance(value, Mapping):
        if value.get("kind") != "linear":
            raise field_error(where, f"unknown wavelength-dependent form {value!r}")
        try:
            from ..instruments import LinearResolvingPower

            LinearResolvingPower.from_dict(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise field_error(where, f"invalid linear resolving power {value!r}: {exc}") from exc
        return dict(value)
    r = as_float(value, where)
    if r <= 0:
        raise field_error(where, f"must be positive, got {r}")
    return r

