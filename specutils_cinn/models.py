"""Trained cINN models on disk: JSON metadata plus safetensors weights.

A model on disk is either a directory holding ``metadata.json`` and
``weights.safetensors``, or a pair of files ``<full_name>.json`` and
``<full_name>.safetensors`` as distributed through the model registry
(see `specutils_cinn.registry`). The weights are only read after their SHA-256
matches the hash recorded in the metadata, and never through pickle.

Loading is bounded and checked before anything large is allocated: ``metadata.json`` may
hold at most `MAX_METADATA_BYTES`, a weights or emulator file at most `MAX_WEIGHTS_BYTES`,
and the tensor names, shapes and dtypes listed in the safetensors header must fit the
architecture of the metadata before the network is built. A model's identity is its
`model_digest`, which covers the metadata, the weights and the emulator. Every failure
raises a `ModelLoadError` (a `ValueError`) or one of its subclasses.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from astropy import units as u
from packaging.version import InvalidVersion, Version

from . import _files
from ._fields import as_float, as_pair, field_error, json_copy
from ._files import (
    ModelFileNotFoundError,
    ModelIntegrityError,
    ModelLoadError,
    atomic_write,
    build_on_meta,
    check_count,
    check_tensor_specs,
    load_verified_safetensors,
    module_specs,
    parse_safetensors,
    read_limited,
    read_verified,
    safetensors_header,
)
from ._hashing import is_sha256, sha256_file
from .calibration import PosteriorCalibration
from .grid import WavelengthGrid, pixel_map
from .parameters import parameter_unit

if TYPE_CHECKING:
    from .fit_check import ModelEmulator

__all__ = [
    "load_verified_safetensors",
    "EMULATOR_FILENAME",
    "FORMAT_VERSION",
    "MAX_METADATA_BYTES",
    "MAX_WEIGHTS_BYTES",
    "METADATA_FILENAME",
    "WEIGHTS_FILENAME",
    "CINNModel",
    "EmulatorSpec",
    "ModelFileNotFoundError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelMetadata",
    "ParameterSpec",
    "model_digest",
    "model_files",
    "sha256_file",
    "validate_model_name",
]

#: Version of the metadata schema written by this package.
FORMAT_VERSION: int = 1
#: Name of the metadata file inside a model directory.
METADATA_FILENAME: str = "metadata.json"
#: Name of the weights file inside a model directory.
WEIGHTS_FILENAME: str = "weights.safetensors"
#: Name of the optional emulator file inside a model directory (registry asset:
#: ``<full_name>.emulator.safetensors``).
EMULATOR_FILENAME: str = "emulator.safetensors"

#: Largest ``metadata.json`` read (bytes); a larger file is refused with a `ModelLoadError`.
MAX_METADATA_BYTES: int = 1 << 20
#: Largest weights or emulator file read (bytes); a larger file is refused with a
#: `ModelLoadError` before it is read. The bundled models' weights are about 11 MB.
MAX_WEIGHTS_BYTES: int = _files.MAX_WEIGHTS_BYTES
#: Largest wavelength grid (pixels) accepted in model metadata.
_MAX_PIXELS = 10_000_000
#: First line of the text whose SHA-256 is `model_digest`.
_DIGEST_HEADER = "specutils-cinn model digest 1"

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._+-]*[A-Za-z0-9])?$")

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _package_version() -> str:
    from . import __version__

    return str(__version__)


def validate_model_name(name: str, what: str = "model name") -> str:
    """Check that ``name`` is a safe model name and return it.

    A safe name starts and ends with a letter or digit, contains only letters, digits
    and ``._+-``, and never ``..``; it can therefore be used as a file name without
    path traversal.

    Parameters
    ----------
    name : str
        The name to check.
    what : str, optional
        How to call the value in the error message.

    Returns
    -------
    str
        ``name`` unchanged.

    Raises
    ------
    ValueError
        If the name is not a string or not safe.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits and '._+-' only, starting and "
            "ending with a letter or digit, without '..'"
        )
    return name


def model_digest(
    metadata_sha256: str, weights_sha256: str, emulator_sha256: str | None = None
) -> str:
    """Return the digest identifying a model: one SHA-256 over all its files.

    It is the SHA-256 of the UTF-8 text ``"specutils-cinn model digest 1\\n"`` followed by
    ``"metadata <sha256>\\n"``, ``"weights <sha256>\\n"`` and, for a model with an emulator,
    ``"emulator <sha256>\\n"``, each ``<sha256>`` being the file's SHA-256. Changing any byte of
    any file of the model changes it. The registry records it per model (``digest``) and
    ``predict`` writes it to ``table.meta["MODELDIG"]``.

    Parameters
    ----------
    metadata_sha256, weights_sha256 : str
        SHA-256 of the metadata and weights files (64 lower-case hex digits).
    emulator_sha256 : str or None, optional
        SHA-256 of the emulator file, for a model with one.

    Returns
    -------
    str
        64 lower-case hexadecimal digits.

    Raises
    ------
    ValueError
        If a hash is not 64 lower-case hex digits.
    """
    lines = [_DIGEST_HEADER]
    for role, sha in (
        ("metadata", metadata_sha256),
        ("weights", weights_sha256),
        ("emulator", emulator_sha256),
    ):
        if sha is None and role == "emulator":
            continue
        if not is_sha256(sha):
            raise ValueError(f"invalid SHA-256 of the {role} file: {sha!r}")
        lines.append(f"{role} {sha}")
    return hashlib.sha256(("\n".join(lines) + "\n").encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ParameterSpec:
    """One predicted parameter: its unit, training range and standardisation.

    The network works on standardised values ``(x - mean) / std``.

    Parameters
    ----------
    name : str
        Parameter name known to `specutils_cinn.parameters.parameter_unit`,
        e.g. ``"teff"`` or ``"mg_fe"``.
    unit : astropy.units.UnitBase or str
        Unit of the parameter; must equal ``parameter_unit(name)``. Strings are
        parsed with ``astropy.units.Unit``.
    range : tuple of float
        ``(low, high)`` range of the training labels.
    mean, std : float
        Standardisation constants; ``std`` must be positive.

    Raises
    ------
    ValueError
        If a value is invalid; the message names the field.
    """

    name: str
    unit: u.UnitBase
    range: tuple[float, float]
    mean: float
    std: float

    def __post_init__(self) -> None:
        prefix = f"parameters[{self.name}]"
        if not isinstance(self.name, str):
            raise field_error("parameters.name", f"expected a string, got {self.name!r}")
        try:
            expected = parameter_unit(self.name)
        except KeyError as exc:
            raise field_error(f"{prefix}.name", str(exc.args[0])) from None
        unit = self.unit
        if isinstance(unit, str):
            try:
                unit = u.Unit(unit)
            except ValueError as exc:
                raise field_error(
                    f"{prefix}.unit", f"cannot parse unit {self.unit!r}: {exc}"
                ) from exc
        if not isinstance(unit, (u.UnitBase, u.FunctionUnitBase)):
            raise field_error(
                f"{prefix}.unit", f"expected a unit or unit string, got {self.unit!r}"
            )
        if unit != expected:
            raise field_error(
                f"{prefix}.unit",
                f"unit {unit.to_string()!r} does not match the unit of {self.name!r}, "
                f"{expected.to_string()!r}",
            )
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "range", as_pair(self.range, f"{prefix}.range"))
        object.__setattr__(self, "mean", as_float(self.mean, f"{prefix}.mean"))
        std = as_float(self.std, f"{prefix}.std")
        if std <= 0:
            raise field_error(f"{prefix}.std", f"must be positive, got {std}")
        object.__setattr__(self, "std", std)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serialisable form used in model metadata.

        Returns
        -------
        dict
            Keys ``name``, ``unit`` (``Unit.to_string()``), ``range``, ``mean``, ``std``.
        """
        return {
            "name": self.name,
            "unit": self.unit.to_string(),
            "range": [self.range[0], self.range[1]],
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], index: int = 0) -> ParameterSpec:
        """Build a parameter from the output of `to_dict`.

        Parameters
        ----------
        d : dict
            The parameter description.
        index : int, optional
            Position in the parameter list, used in error messages.

        Returns
        -------
        ParameterSpec

        Raises
        ------
        ValueError
            If a key is missing, unknown or invalid; the message names it.
        """
        where = f"parameters[{index}]"
        if not isinstance(d, Mapping):
            raise field_error(where, f"expected an object, got {d!r}")
        keys = ("name", "unit", "range", "mean", "std")
        for key in keys:
            if key not in d:
                raise field_error(f"{where}.{key}", "missing")
        unknown = sorted(set(d) - set(keys))
        if unknown:
            raise field_error(f"{where}.{unknown[0]}", f"unknown key (allowed: {list(keys)})")
        if not isinstance(d["unit"], str):
            raise field_error(f"{where}.unit", f"expected a unit string, got {d['unit']!r}")
        return cls(d["name"], d["unit"], d["range"], d["mean"], d["std"])


_EMULATOR_KEYS = (
    "sha256",
    "architecture",
    "chi2_threshold",
    "label_defaults",
    "exclude",
    "continuum_degree",
    "info",
)


@dataclass(frozen=True)
class EmulatorSpec:
    """The ``emulator`` entry of model metadata: a spectrum emulator for a goodness-of-fit check.

    The emulator (a `~specutils_cinn.emulator.SpectrumEmulator`) and its per-pixel error floor
    are stored in one safetensors file beside the weights (`EMULATOR_FILENAME` in a model
    directory, ``<full_name>.emulator.safetensors`` as a registry asset), whose SHA-256 is
    recorded here and checked before the file is parsed.

    Parameters
    ----------
    architecture : dict
        `~specutils_cinn.emulator.SpectrumEmulator.architecture` (labels, ranges, pixel grid).
        Its pixel centres must coincide with some of the model's pixels (same step).
    chi2_threshold : float
        Default threshold of the reduced chi-square above which ``POOR_FIT`` is set.
    label_defaults : dict of str to float, optional
        Values of emulator labels that the model does not predict, e.g. ``{"mn_fe": 0.0}``.
        An emulator label ``a_li`` may instead take ``{"li_fe": x}``: A(Li) = x + 1.05 + [Fe/H]
        (`~specutils_cinn.parameters.a_li_from_li_fe`).
        A ``vsini`` the model does not predict is 0.
    exclude : sequence of (float, float), optional
        Wavelength windows (Angstrom, the grid's medium) left out of the chi-square, e.g.
        around lines of elements whose abundance is only a default.
    continuum_degree : int, optional
        Degree of the Legendre polynomial per grid segment by which the emulated spectrum is
        multiplied (fitted by weighted least squares) before the comparison; absorbs the
        difference between the input's normalisation and the emulator's true continuum.
    sha256 : str or None, optional
        SHA-256 of the emulator file; `CINNModel.save` fills it in.
    info : dict, optional
        Free-form JSON provenance (how the error floor and the threshold were measured).

    Raises
    ------
    ValueError
        If a field is invalid; the message names it.
    """

    architecture: dict[str, Any]
    chi2_threshold: float
    label_defaults: dict[str, float] = field(default_factory=dict)
    exclude: tuple[tuple[float, float], ...] = ()
    continuum_degree: int = 3
    sha256: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arch = self.architecture
        if not isinstance(arch, Mapping):
            raise field_error("emulator.architecture", f"expected an object, got {arch!r}")
        arch = json_copy(dict(arch), "emulator.architecture")
        for key in ("label_names", "label_ranges", "grid"):
            if key not in arch:
                raise field_error("emulator.architecture", f"missing key {key!r}")
        try:
            grid = WavelengthGrid.from_dict(arch["grid"])
        except ValueError as exc:
            raise field_error("emulator.architecture.grid", str(exc)) from exc
        if grid.npix > _MAX_PIXELS:
            raise field_error(
                "emulator.architecture.grid", f"{grid.npix} pixels, more than {_MAX_PIXELS:,}"
            )
        object.__setattr__(self, "architecture", arch)
        object.__setattr__(self, "_grid", grid)
        thr = as_float(self.chi2_threshold, "emulator.chi2_threshold")
        if thr <= 0:
            raise field_error("emulator.chi2_threshold", f"must be positive, got {thr}")
        object.__setattr__(self, "chi2_threshold", thr)
        if not isinstance(self.label_defaults, Mapping):
            raise field_error(
                "emulator.label_defaults", f"expected an object, got {self.label_defaults!r}"
            )
        defaults = {
            str(k): as_float(v, f"emulator.label_defaults.{k}")
            for k, v in self.label_defaults.items()
        }
        object.__setattr__(self, "label_defaults", defaults)
        windows = []
        if isinstance(self.exclude, (str, bytes)) or not isinstance(self.exclude, Sequence):
            raise field_error(
                "emulator.exclude", f"expected a list of [low, high], got {self.exclude!r}"
            )
        for i, w in enumerate(self.exclude):
            windows.append(as_pair(w, f"emulator.exclude[{i}]"))
        object.__setattr__(self, "exclude", tuple(windows))
        deg = self.continuum_degree
        if isinstance(deg, bool) or not isinstance(deg, (int, np.integer)) or not 0 <= deg <= 10:
            raise field_error("emulator.continuum_degree", f"expected an integer 0-10, got {deg!r}")
        object.__setattr__(self, "continuum_degree", int(deg))
        sha = self.sha256
        if sha is not None and not is_sha256(sha):
            raise field_error("emulator.sha256", f"expected 64 lower-case hex digits, got {sha!r}")
        if not isinstance(self.info, Mapping):
            raise field_error("emulator.info", f"expected an object, got {self.info!r}")
        object.__setattr__(self, "info", json_copy(dict(self.info), "emulator.info"))

    @property
    def grid(self) -> WavelengthGrid:
        """The emulator's pixel grid."""
        return self._grid  # type: ignore[attr-defined]

    @property
    def label_names(self) -> list[str]:
        """The emulator's input labels, in order."""
        return [str(n) for n in self.architecture["label_names"]]

    def check_model(self, metadata: ModelMetadata) -> None:
        """Check that the emulator fits a model: shared pixels and a value for every label.

        Parameters
        ----------
        metadata : ModelMetadata
            The model's metadata.

        Raises
        ------
        ValueError
            If no emulator pixel lies on the model's grid, or an emulator label is neither
            predicted by the model nor given a default.
        """
        model_index, _ = pixel_map(metadata.grid, self.grid)
        if model_index.size == 0:
            raise field_error(
                "emulator.architecture.grid", "no pixel in common with the model's grid"
            )
        predicted = set(metadata.parameter_names)
        for name in self.label_names:
            if name in predicted or name in self.label_defaults or name == "vsini":
                continue
            if name == "a_li" and "li_fe" in self.label_defaults and "fe_h" in predicted:
                continue
            raise field_error(
                "emulator.label_defaults",
                f"emulator label {name!r} is not predicted by the model and has no default",
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form stored under ``"emulator"`` in model metadata.

        Returns
        -------
        dict
        """
        return {
            "sha256": self.sha256,
            "architecture": copy.deepcopy(self.architecture),
            "chi2_threshold": self.chi2_threshold,
            "label_defaults": dict(self.label_defaults),
            "exclude": [list(w) for w in self.exclude],
            "continuum_degree": self.continuum_degree,
            "info": copy.deepcopy(self.info),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EmulatorSpec:
        """Parse the output of `to_dict`.

        Parameters
        ----------
        d : dict
            The ``"emulator"`` entry.

        Returns
        -------
        EmulatorSpec

        Raises
        ------
        ValueError
            If a key is missing, unknown or invalid.
        """
        if not isinstance(d, Mapping):
            raise field_error("emulator", f"expected an object, got {d!r}")
        for key in ("architecture", "chi2_threshold"):
            if key not in d:
                raise field_error(f"emulator.{key}", "missing")
        unknown = sorted(set(d) - set(_EMULATOR_KEYS))
        if unknown:
            raise field_error(
                f"emulator.{unknown[0]}", f"unknown key (allowed: {list(_EMULATOR_KEYS)})"
            )
        return cls(**{k: d[k] for k in _EMULATOR_KEYS if k in d})

    def replace(self, **changes: Any) -> EmulatorSpec:
        """Return a validated copy with some fields changed (as ``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


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
    normalization : dict
        How the input flux must be normalised; needs a string ``"kind"``,
        e.g. ``{"kind": "continuum"}``.
    snr_range : tuple of float
        ``(low, high)`` S/N per Angstrom seen in training.
    description : str, optional
        One-line human-readable description.
    training : dict, optional
        Free-form JSON-serialisable provenance (data, epochs, seed, metrics, ...).
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
    normalization: dict[str, Any]
    snr_range: tuple[float, float]
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None
    package_version: str = field(default_factory=_package_version)
    format_version: int = FORMAT_VERSION
    emulator: EmulatorSpec | None = None
    posterior_calibration: PosteriorCalibration | None = None
    unconstrained: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field, normalising containers to their canonical types.

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
        if self.grid.npix > _MAX_PIXELS:
            raise field_error(
                "wavelength_grid", f"{self.grid.npix} pixels, more than {_MAX_PIXELS:,}"
            )

        arch = self.architecture
        if not isinstance(arch, Mapping):
            raise field_error("architecture", f"expected an object, got {arch!r}")
        arch = json_copy(dict(arch), "architecture")
        from .flows import ARCHITECTURE_KEYS

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
        if not isinstance(norm, Mapping) or not isinstance(norm.get("kind"), str):
            raise field_error(
                "normalization", f'expected an object with a string "kind", got {norm!r}'
            )
        object.__setattr__(self, "normalization", json_copy(dict(norm), "normalization"))

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
    def label_mean(self) -> np.ndarray:
        """Standardisation means, float64 array of shape ``[n_params]``."""
        return np.array([p.mean for p in self.parameters], dtype=np.float64)

    @property
    def label_std(self) -> np.ndarray:
        """Standardisation scales, float64 array of shape ``[n_params]``."""
        return np.array([p.std for p in self.parameters], dtype=np.float64)

    def standardize(self, params: ArrayT) -> ArrayT:
        """Map physical parameter values to the network's standardised space.

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
            Standardised values with the parameters along the last axis.

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

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serialisable metadata (format version 1).

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
            "normalization": copy.deepcopy(self.normalization),
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
        """Serialise to strict JSON text (no NaN or infinity), ending with a newline.

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
        data = read_limited(Path(path), MAX_METADATA_BYTES, "metadata file", "MAX_METADATA_BYTES")
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


def model_files(
    path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """Return the metadata and weights files of a model on disk.

    Parameters
    ----------
    path : str or os.PathLike
        A model directory (``metadata.json`` + ``weights.safetensors``), a metadata file
        (``metadata.json`` or ``<stem>.json``, whose weights are ``weights.safetensors``
        or ``<stem>.safetensors`` beside it), or a weights file (the reverse).
    weights : str or os.PathLike, optional
        The weights file; if given, ``path`` is the metadata file.

    Returns
    -------
    tuple of pathlib.Path
        ``(metadata_file, weights_file)``, both existing.

    Raises
    ------
    ModelFileNotFoundError
        If a file is missing (a `FileNotFoundError` too).
    ModelLoadError
        If ``path`` is empty, or neither a directory nor a ``.json``/``.safetensors`` file.
    """
    if isinstance(path, str) and not path.strip():
        raise ModelLoadError("empty model path: give a model directory or metadata file")
    p = Path(path)
    if weights is not None:
        meta, wts = p, Path(weights)
    elif p.is_dir():
        meta, wts = p / METADATA_FILENAME, p / WEIGHTS_FILENAME
    elif p.suffix == ".json":
        meta = p
        wts = (
            p.with_name(WEIGHTS_FILENAME)
            if p.name == METADATA_FILENAME
            else p.with_suffix(".safetensors")
        )
    elif p.suffix == ".safetensors":
        wts = p
        meta = (
            p.with_name(METADATA_FILENAME) if p.name == WEIGHTS_FILENAME else p.with_suffix(".json")
        )
    elif not p.exists():
        raise ModelFileNotFoundError(f"no model at {p}")
    else:
        raise ModelLoadError(
            f"cannot load a model from {p}: give a model directory (with {METADATA_FILENAME} and "
            f"{WEIGHTS_FILENAME}), a metadata .json file, or metadata and weights files"
        )
    for f, what in ((meta, "metadata"), (wts, "weights")):
        if not f.is_file():
            raise ModelFileNotFoundError(f"model {what} file not found: {f}")
    return meta, wts


def _segment_resolving_power(value: Any, segment: str) -> float | dict[str, Any]:
    """A positive number, or a wavelength-dependent form such as
    ``{"kind": "linear", "wavelength": [w0, w1], "resolving_power": [r0, r1]}``
    (see `specutils_cinn.instruments.LinearResolvingPower`)."""
    where = f"resolving_power[{segment!r}]"
    if isinstance(value, Mapping):
        if value.get("kind") != "linear":
            raise field_error(where, f"unknown wavelength-dependent form {value!r}")
        try:
            from .instruments import LinearResolvingPower

            LinearResolvingPower.from_dict(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise field_error(where, f"invalid linear resolving power {value!r}: {exc}") from exc
        return dict(value)
    r = as_float(value, where)
    if r <= 0:
        raise field_error(where, f"must be positive, got {r}")
    return r


class CINNModel:
    """A trained conditional INN together with its metadata.

    Parameters
    ----------
    metadata : ModelMetadata
        The model's metadata; its ``architecture`` must be the network's.
    network : torch.nn.Module
        A `specutils_cinn.flows.ConditionalINN` (anything with an ``architecture`` dict).
    sha256 : str or None, optional
        SHA-256 of the weights file the network was loaded from, if any.
    source : pathlib.Path or None, optional
        Where the model was loaded from, if anywhere.
    emulator : ModelEmulator or None, optional
        The emulator of ``metadata.emulator``, if already in memory (`load` reads it lazily).

    Raises
    ------
    TypeError
        If ``metadata`` or ``network`` has the wrong type.
    ValueError
        If the network's architecture differs from the metadata's.

    Examples
    --------
    >>> from specutils_cinn.models import CINNModel
    >>> model = CINNModel.load("path/to/model")  # doctest: +SKIP
    >>> model.metadata.parameter_names  # doctest: +SKIP
    ['teff', 'logg', 'fe_h']
    """

    def __init__(
        self,
        metadata: ModelMetadata,
        network: torch.nn.Module,
        *,
        sha256: str | None = None,
        source: str | os.PathLike[str] | None = None,
        emulator: ModelEmulator | None = None,
    ) -> None:
        if not isinstance(metadata, ModelMetadata):
            raise TypeError(f"metadata must be a ModelMetadata, got {type(metadata).__name__}")
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        arch = getattr(network, "architecture", None)
        if arch is not None and json_copy(arch, "architecture") != metadata.architecture:
            raise ValueError(
                "the network's architecture differs from metadata.architecture: "
                f"{arch!r} != {metadata.architecture!r}"
            )
        self._metadata = metadata
        self._network = network
        self._sha256 = sha256
        self._source = None if source is None else Path(source)
        if emulator is not None and metadata.emulator is None:
            raise ValueError("an emulator was given but metadata.emulator is None")
        self._emulator = emulator
        self._emulator_file: Path | None = None
        self._digest: str | None = None
        self._registry_name: str | None = None

    @property
    def metadata(self) -> ModelMetadata:
        """The model's `ModelMetadata`."""
        return self._metadata

    @property
    def network(self) -> torch.nn.Module:
        """The `~specutils_cinn.flows.ConditionalINN` (in eval mode after `load`)."""
        return self._network

    @property
    def sha256(self) -> str | None:
        """SHA-256 of the weights file loaded or last saved (None for an unsaved model)."""
        return self._sha256

    @property
    def source(self) -> Path | None:
        """Path given to `load` (None if the model was built in memory)."""
        return self._source

    @property
    def digest(self) -> str | None:
        """`model_digest` of the files loaded or last saved, None for an unsaved model.

        It covers the metadata, the weights and the emulator: two models with the same
        digest have byte-identical files. ``predict`` records it as ``MODELDIG``.
        """
        return self._digest

    @property
    def registry_name(self) -> str | None:
        """Registered full name the files were verified against, or None.

        Set when the model was loaded through the registry
        (``CINNParameterEstimator.from_pretrained`` with a model name): the SHA-256 of every
        file then matched the registry entry. None for a model loaded from a path or built in
        memory, whatever name its metadata gives.
        """
        return self._registry_name

    @property
    def emulator(self) -> ModelEmulator | None:
        """The model's spectrum emulator for the goodness-of-fit check, or None.

        Read on first access from the emulator file beside the weights, after its SHA-256
        has been checked against ``metadata.emulator.sha256`` (never through pickle).

        Raises
        ------
        ModelFileNotFoundError
            If the metadata names an emulator but its file is missing.
        ModelIntegrityError
            If the file's SHA-256 differs from the metadata.
        ModelLoadError
            If the file is larger than `MAX_WEIGHTS_BYTES` or its content does not fit.
        """
        if self._emulator is None and self._metadata.emulator is not None:
            if self._emulator_file is None:
                raise ValueError("metadata.emulator is set but no emulator is attached or saved")
            from .fit_check import ModelEmulator

            self._emulator = ModelEmulator.load(
                self._emulator_file, self._metadata.emulator, self._metadata.grid,
                limit=MAX_WEIGHTS_BYTES,
            )
        return self._emulator

    def attach_emulator(
        self,
        emulator: torch.nn.Module,
        error_floor: Any,
        *,
        chi2_threshold: float,
        label_defaults: Mapping[str, float] | None = None,
        exclude: Sequence[tuple[float, float]] = (),
        continuum_degree: int = 3,
        info: Mapping[str, Any] | None = None,
        trim: bool = True,
    ) -> CINNModel:
        """Return a copy of the model with a spectrum emulator for the goodness-of-fit check.

        Parameters
        ----------
        emulator : `~specutils_cinn.emulator.SpectrumEmulator`
            Emulator of the model's spectra (after the instrument's LSF, before rotation).
        error_floor : float or array-like
            Its error per pixel in continuum units, one value or one per emulator pixel
            (before trimming), e.g. the RMS difference from held-out synthetic spectra.
        chi2_threshold : float
            Default ``POOR_FIT`` threshold of the reduced chi-square.
        label_defaults, exclude, continuum_degree, info
            See `EmulatorSpec`.
        trim : bool, optional
            Keep only the emulator pixels that are model pixels
            (`~specutils_cinn.fit_check.trim_emulator`).

        Returns
        -------
        CINNModel
            Sharing the network; unsaved (``metadata.emulator.sha256`` is None until `save`).
        """
        from .fit_check import ModelEmulator, trim_emulator

        floor = np.asarray(error_floor, dtype=np.float32).reshape(-1)
        if trim:
            if floor.size > 1:
                if floor.size != emulator.grid.npix:
                    raise ValueError(
                        f"error_floor has {floor.size} values, the emulator {emulator.grid.npix} "
                        "pixels"
                    )
                floor = floor[pixel_map(self._metadata.grid, emulator.grid)[1]]
            emulator = trim_emulator(emulator, self._metadata.grid)
        spec = EmulatorSpec(
            architecture=emulator.architecture,
            chi2_threshold=chi2_threshold,
            label_defaults=dict(label_defaults or {}),
            exclude=tuple(exclude),
            continuum_degree=continuum_degree,
            info=dict(info or {}),
        )
        metadata = self._metadata.replace(emulator=spec)
        attached = ModelEmulator(spec, emulator, floor, metadata.grid)
        return CINNModel(metadata, self._network, sha256=self._sha256, emulator=attached)

    @property
    def device(self) -> torch.device:
        """Device of the network's parameters."""
        for t in self._network.parameters():
            return t.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> CINNModel:
        """Move the network to ``device`` in place.

        Parameters
        ----------
        device : str or torch.device
            Target device, e.g. ``"cuda"``.

        Returns
        -------
        CINNModel
            ``self``.
        """
        self._network.to(device)
        return self

    def summary(self) -> str:
        """A human-readable description: parameters, grid, provenance and training.

        Returns
        -------
        str
            Several lines of text, as printed by ``specutils-cinn models info``.
        """
        md = self._metadata
        n_weights = sum(p.numel() for p in self._network.parameters())
        lines = [
            f"{md.full_name}: {md.description}",
            f"  weights SHA-256: {self.sha256}",
            f"  model digest (metadata, weights, emulator): {self.digest}",
            f"  source: {self._source}"
            + (f" (verified against the registry entry {self._registry_name})"
               if self._registry_name else ""),
            f"  network: {n_weights:,} parameters, architecture {json.dumps(md.architecture)}",
            "  parameters:",
        ]
        for p, unit, (lo, hi) in zip(md.parameter_names, md.units, md.ranges, strict=True):
            lines.append(f"    {p:<8s} [{unit.to_string()}]  training range {lo:g} .. {hi:g}")
        grid = md.grid
        segs = ", ".join(f"{s.name} {s.start:g}-{s.stop:g} A / {s.step:g} A"
                         for s in grid.segments)
        lines += [
            f"  wavelength grid ({grid.medium}, {grid.npix} px): {segs}",
            f"  resolving power: {json.dumps(md.resolving_power)}",
            f"  normalization: {json.dumps(md.normalization)}",
            f"  S/N per Angstrom in training: {md.snr_range[0]:g} .. {md.snr_range[1]:g}",
        ]
        cal = md.posterior_calibration
        if cal is not None:
            parts = [f"{p} x{cal.scale.get(p, 1.0):g} (+) {cal.floor.get(p, 0.0):g}"
                     for p in md.parameter_names if p in cal.parameters]
            lines.append("  posterior calibration (scale (+) floor): " + ", ".join(parts))
        tr = md.training or {}
        data = tr.get("data", {})
        if isinstance(data, dict) and data.get("source"):
            lines.append(f"  training data: {data['source']}")
        hist = tr.get("history", {})
        if hist:
            steps = tr.get("config", {}).get("steps", "?")
            lines.append(
                f"  trained {tr.get('date', '?')} on {hist.get('device', '?')}: best step "
                f"{hist.get('best_step', '?')} of {steps}, "
                f"{hist.get('seconds', float('nan')):.0f} s, "
                f"{tr.get('n_train', '?')} training / {tr.get('n_validation', '?')} validation "
                "spectra"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        where = f", source={str(self._source)!r}" if self._source is not None else ""
        return (
            f"<CINNModel {self._metadata.full_name}: {self._metadata.parameter_names}, "
            f"{self._metadata.grid.npix} pixels{where}>"
        )

    @classmethod
    def build(cls, metadata: ModelMetadata) -> CINNModel:
        """Create a model with a freshly initialised (untrained) network.

        Parameters
        ----------
        metadata : ModelMetadata
            Metadata whose ``architecture`` is passed to `specutils_cinn.flows.build_cinn`.

        Returns
        -------
        CINNModel
        """
        from .flows import build_cinn

        return cls(metadata, build_cinn(metadata.architecture))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        weights: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device = "cpu",
        expected_sha256: Mapping[str, str] | None = None,
    ) -> CINNModel:
        """Load a model, verifying every file before it is parsed.

        The metadata (at most `MAX_METADATA_BYTES`) is read once, hashed and validated; the
        weights (at most `MAX_WEIGHTS_BYTES`) are read once and their SHA-256 compared with
        the metadata's ``weights_sha256``; the tensor names, shapes and dtypes in the
        safetensors header are compared with the architecture before the network is built,
        so that metadata and weights that do not fit never allocate a network. Nothing is
        unpickled. The emulator, if any, is read and verified on first use.

        Parameters
        ----------
        path : str or os.PathLike
            A model directory (``metadata.json`` + ``weights.safetensors``), a
            metadata file (``metadata.json`` or ``<full_name>.json``, the weights
            being ``weights.safetensors`` or ``<full_name>.safetensors`` beside it), or,
            with ``weights``, the metadata file of a pair. An empty string is refused.
        weights : str or os.PathLike, optional
            The weights file, when it cannot be inferred from ``path``.
        device : str or torch.device, optional
            Device to put the network on.
        expected_sha256 : mapping of str to str, optional
            SHA-256 the files must have, with keys ``"metadata"``, ``"weights"`` and, for a
            model with an emulator, ``"emulator"`` (for example from the registry). Without
            it the files are only checked against each other (the metadata records the
            weights' and the emulator's SHA-256) and `digest` tells which model was loaded.

        Returns
        -------
        CINNModel
            With the network in eval mode, and `digest` set.

        Raises
        ------
        ModelFileNotFoundError
            If a file is missing (a `FileNotFoundError` too).
        ModelIntegrityError
            If a file's SHA-256 differs from ``expected_sha256`` or the weights' from
            ``weights_sha256`` (the file and both hashes are named).
        ModelLoadError
            If a file is too large, the metadata is invalid, the weights file is not valid
            safetensors, or its tensors do not fit the architecture. All three are
            `ValueError`.
        """
        meta_path, weights_path = model_files(path, weights)
        expected = _expected_hashes(expected_sha256)
        meta_bytes = read_limited(
            meta_path, MAX_METADATA_BYTES, "metadata file", "MAX_METADATA_BYTES"
        )
        meta_sha = hashlib.sha256(meta_bytes).hexdigest()
        if expected is not None:
            _check_hash(meta_path, "metadata file", expected["metadata"], meta_sha, "registry")
        metadata = ModelMetadata._parse_file(meta_bytes, meta_path)
        weights_sha = metadata.weights_sha256
        if weights_sha is None:
            raise ModelLoadError(f"{meta_path}: model metadata field 'weights_sha256' is missing")
        emulator_sha = None
        if metadata.emulator is not None:
            emulator_sha = metadata.emulator.sha256
            if emulator_sha is None:
                raise ModelLoadError(
                    f"{meta_path}: model metadata field 'emulator.sha256' is missing"
                )
        if expected is not None:
            _check_hash(
                weights_path, "weights file", expected["weights"], weights_sha, "registry",
                actual_from=f"weights_sha256 in {meta_path}",
            )
            if expected.get("emulator") != emulator_sha:
                raise ModelIntegrityError(
                    f"{meta_path}: the registry expects "
                    + (f"an emulator with SHA-256 {expected['emulator']}"
                       if expected.get("emulator") else "no emulator")
                    + ", the metadata records "
                    + (f"one with SHA-256 {emulator_sha}" if emulator_sha else "none")
                )
        data = read_verified(weights_path, weights_sha, "weights file", limit=MAX_WEIGHTS_BYTES)

        from .flows import build_cinn

        arch = metadata.architecture
        header = safetensors_header(data, weights_path)
        for key in ("n_blocks", "subnet_layers"):
            check_count(arch[key], f"architecture.{key}", header, weights_path)
        reference = build_on_meta(lambda: build_cinn(arch), meta_path)
        check_tensor_specs(module_specs(reference), header, weights_path)
        del reference
        try:
            network = build_cinn(arch)
            network.load_state_dict(parse_safetensors(data, weights_path), strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"cannot load the weights {weights_path}: {exc}") from exc
        del data
        network.eval()
        network.to(device)
        model = cls(metadata, network, sha256=weights_sha, source=path)
        model._digest = model_digest(meta_sha, weights_sha, emulator_sha)
        if metadata.emulator is not None:
            model._emulator_file = _emulator_path(meta_path)
            if not model._emulator_file.is_file():
                raise ModelFileNotFoundError(
                    f"model emulator file not found: {model._emulator_file}"
                )
        return model

    def save(self, directory: str | os.PathLike[str], *, registry_names: bool = False) -> Path:
        """Write the weights, then the metadata with the weights' hash.

        Both files are written atomically. ``self.metadata``, `sha256` and `digest` are
        updated to the written state.

        Parameters
        ----------
        directory : str or os.PathLike
            Destination directory, created if needed.
        registry_names : bool, optional
            If True, name the files ``<full_name>.json`` and ``<full_name>.safetensors``
            (registry release assets) instead of ``metadata.json`` and
            ``weights.safetensors``.

        Returns
        -------
        pathlib.Path
            The metadata file written; `load` accepts it.

        Raises
        ------
        ValueError
            If the metadata would be larger than `MAX_METADATA_BYTES` (`load` would refuse
            it); nothing is written.
        """
        from safetensors.torch import save as save_safetensors

        directory = Path(directory)
        if registry_names:
            stem = self._metadata.full_name
            meta_path, weights_path = directory / f"{stem}.json", directory / f"{stem}.safetensors"
        else:
            meta_path, weights_path = directory / METADATA_FILENAME, directory / WEIGHTS_FILENAME
        tensors = {
            k: v.detach().to("cpu").contiguous().clone()
            for k, v in self._network.state_dict().items()
        }
        data = save_safetensors(tensors, metadata={"format": "pt"})
        digest = hashlib.sha256(data).hexdigest()
        metadata = self._metadata.replace(weights_sha256=digest)
        emulator = self.emulator
        emu_data = None
        if emulator is not None:
            emu_data = save_safetensors(emulator.state_tensors(), metadata={"format": "pt"})
            spec = metadata.emulator.replace(sha256=hashlib.sha256(emu_data).hexdigest())
            metadata = metadata.replace(emulator=spec)
        meta_bytes = metadata.to_json().encode("utf-8")
        if len(meta_bytes) > MAX_METADATA_BYTES:
            raise ValueError(
                f"the metadata of {metadata.full_name} is {len(meta_bytes):,} bytes, more than "
                f"MAX_METADATA_BYTES = {MAX_METADATA_BYTES:,}: the model could not be loaded "
                "(shorten metadata.training)"
            )
        atomic_write(weights_path, data)
        if emu_data is not None:
            atomic_write(_emulator_path(meta_path), emu_data)
            emulator.spec = metadata.emulator
            self._emulator_file = _emulator_path(meta_path)
        atomic_write(meta_path, meta_bytes)
        self._metadata = metadata
        self._sha256 = digest
        self._digest = model_digest(
            hashlib.sha256(meta_bytes).hexdigest(),
            digest,
            None if metadata.emulator is None else metadata.emulator.sha256,
        )
        return meta_path


def _emulator_path(meta_path: Path) -> Path:
    """The emulator file beside a metadata file (directory or registry layout)."""
    if meta_path.name == METADATA_FILENAME:
        return meta_path.with_name(EMULATOR_FILENAME)
    return meta_path.with_name(f"{meta_path.stem}.emulator.safetensors")


def _expected_hashes(expected: Mapping[str, str] | None) -> dict[str, str] | None:
    if expected is None:
        return None
    if not isinstance(expected, Mapping):
        raise TypeError(f"expected_sha256 must be a mapping, got {type(expected).__name__}")
    unknown = sorted(set(expected) - {"metadata", "weights", "emulator"})
    missing = sorted({"metadata", "weights"} - set(expected))
    if unknown or missing:
        raise ValueError(
            f"expected_sha256 needs the keys 'metadata' and 'weights' (and 'emulator' for a "
            f"model with one); missing {missing}, unknown {unknown}"
        )
    out = {}
    for key, sha in expected.items():
        if sha is None and key == "emulator":
            continue
        if not is_sha256(sha):
            raise ValueError(f"expected_sha256[{key!r}]: not 64 lower-case hex digits: {sha!r}")
        out[key] = sha
    return out


def _check_hash(
    path: Path, what: str, expected: str, actual: str, source: str, actual_from: str = ""
) -> None:
    if expected != actual:
        where = f" ({actual_from})" if actual_from else ""
        raise ModelIntegrityError(
            f"{what} {path} does not match the {source}: expected SHA-256 {expected}, "
            f"actual {actual}{where}; the file is corrupt or was modified"
        )


