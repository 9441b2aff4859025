"""The entries of model metadata that describe one part: `ParameterSpec` and `EmulatorSpec`.

A `ParameterSpec` is one predicted parameter (unit, training range, standardization); an
`EmulatorSpec` the spectrum emulator shipped with a model for the goodness-of-fit check.
Both are validated on construction and serialized by `~specutils_cinn.model.ModelMetadata`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy import units as u

from .._fields import as_float, as_pair, field_error, json_copy
from .._hashing import is_sha256
from ..parameters import parameter_unit
from ..wavelength_grid import WavelengthGrid, pixel_map

if TYPE_CHECKING:
    from .metadata import ModelMetadata

__all__ = ["MAX_PIXELS", "EmulatorSpec", "ParameterSpec"]

#: Largest wavelength grid (pixels) accepted in model metadata, for the model and its emulator.
MAX_PIXELS: int = 10_000_000


@dataclass(frozen=True)
class ParameterSpec:
    """One predicted parameter: its unit, training range and standardization.

    The network works on standardized values ``(x - mean) / std``.

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
        Standardization constants; ``std`` must be positive.

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
        """Return the JSON-serializable form used in model metadata.

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
    "noise_window",
    "renormalize",
    "info",
)

# Largest ``noise_window`` of an EmulatorSpec (pixels).
_MAX_NOISE_WINDOW = 10001


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
        Its pixel centers must coincide with some of the model's pixels (same step).
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
        difference between the input's normalization and the emulator's true continuum.
    noise_window : int, optional
        0 (the default, and every model before 2.1.0): the chi-square divides each pixel's
        squared residual by the input's reported variance at that pixel. N > 0: by the mean
        reported variance of the valid pixels within N pixels around it in the same segment
        (a running mean). Uncertainties computed from the noisy flux (photon noise, as
        pipelines report them) are small where the noise happened to push the flux down, which
        at a few counts per pixel inflates a per-pixel chi-square several-fold even at the true
        labels (docs/quality.rst, "The fit check at low S/N"); the local mean variance does not
        depend on the pixel's own noise.
    renormalize : bool, optional
        False (the default, and every model before 2.1.0): the emulated spectrum, normalized to
        its true continuum, is compared with the input after the continuum polynomial alone.
        True: an emulated spectrum is first divided by the model's own input normalization
        (`~specutils_cinn.model.ModelMetadata.normalization`, fitted to it on the pixels the
        input's fit used) wherever the input was normalized, so that both sides carry the same
        pseudo-continuum. A cool star's pseudo-continuum in a crowded blue arm is far from a
        low-order polynomial times the true one: without this, the continuum polynomial cannot
        absorb the difference and the chi-square of such spectra is large even at the true
        labels (docs/output.rst, "The fit check compares like with like").
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
    noise_window: int = 0
    renormalize: bool = False

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
        if grid.npix > MAX_PIXELS:
            raise field_error(
                "emulator.architecture.grid", f"{grid.npix} pixels, more than {MAX_PIXELS:,}"
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
        win = self.noise_window
        if (isinstance(win, bool) or not isinstance(win, (int, np.integer))
                or not 0 <= win <= _MAX_NOISE_WINDOW):
            raise field_error("emulator.noise_window",
                              f"expected an integer 0-{_MAX_NOISE_WINDOW}, got {win!r}")
        object.__setattr__(self, "noise_window", int(win))
        if not isinstance(self.renormalize, (bool, np.bool_)):
            raise field_error("emulator.renormalize", f"expected true or false, got "
                              f"{self.renormalize!r}")
        object.__setattr__(self, "renormalize", bool(self.renormalize))
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
            if name == "a_li" and "fe_h" in predicted and (
                    "li_fe" in predicted or "li_fe" in self.label_defaults):
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
        out = {
            "sha256": self.sha256,
            "architecture": copy.deepcopy(self.architecture),
            "chi2_threshold": self.chi2_threshold,
            "label_defaults": dict(self.label_defaults),
            "exclude": [list(w) for w in self.exclude],
            "continuum_degree": self.continuum_degree,
            "info": copy.deepcopy(self.info),
        }
        if self.noise_window:  # absent for the per-pixel chi-square (models before 2.1.0)
            out["noise_window"] = self.noise_window
        if self.renormalize:  # absent for the comparison without it (models before 2.1.0)
            out["renormalize"] = True
        return out

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
