r"""An unlimited stream of noise-free training spectra from a spectrum emulator.

`EmulatorSimulator` draws stellar labels from a prior (`~specutils_cinn.training.LabelPrior`,
module ``training.prior``), evaluates a
`~specutils_cinn.emulator.SpectrumEmulator` (continuum-normalized flux after the instrumental
line-spread function, binned on the instrument's pixels), applies rotation, optionally
radial-tangential macroturbulence, and a small residual radial velocity
(`~specutils_cinn.instruments.rotation.BinnedRotation`), and returns the flux with the labels in
the model's parameter order. Everything runs batched in torch on the device
of the caller's generator, fast enough to make fresh spectra for every training step
(`specutils_cinn.training.train_model` accepts a simulator in place of a training set;
`SpectrumSimulator` is what it needs). Noise, masks, gaps and continuum errors are added
afterwards by `specutils_cinn.training.augment_batch`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..emulator import SpectrumEmulator, hat_weights, load_emulator
from ..instruments.rotation import BinnedRotation
from ..parameters import DEFAULT_PARAMETERS, emulator_label_values, parameter_unit
from ..synthesis.design import KielRegion
from ..wavelength_grid import WavelengthGrid, crop_grid
from .config import SIMULATOR_KEYS
from .prior import LabelPrior

__all__ = ["EmulatorSimulator", "SpectrumSimulator"]


# --------------------------------------------------------------------------------------------
# the protocol train_model accepts
# --------------------------------------------------------------------------------------------
class SpectrumSimulator(Protocol):
    """What `specutils_cinn.training.train_model` needs from a simulator (a protocol).

    Any object with these attributes and a ``sample`` method works (structural typing: there
    is no need to inherit from this class). `EmulatorSimulator` is one.

    Attributes
    ----------
    parameters : list of str
        Label names in network order.
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        Pixel grid of the simulated flux (the model grid).
    resolving_power : float or dict
        Resolving power of the simulated spectra (per segment name when a dict).
    provenance : dict
        JSON-serializable description, recorded in the model metadata.
    """

    parameters: list[str]
    grid: WavelengthGrid
    resolving_power: float | dict[str, Any]
    provenance: dict[str, Any]

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` noise-free spectra ``[n, npix]`` and their labels ``[n, n_params]``.

        Tensors are on the generator's device. Optional extras used when present:
        ``sample_labels(n, generator)`` (labels only, for the standardization statistics) and
        ``parameter_ranges`` (dict of prior ranges, recorded as the model's training ranges).

        Parameters
        ----------
        n : int
            Number of spectra.
        generator : `torch.Generator`
            Source of randomness; its device is where the work runs.

        Returns
        -------
        flux : `torch.Tensor`, shape ``[n, npix]``
            Noise-free continuum-normalized flux on ``grid``.
        labels : `torch.Tensor`, shape ``[n, n_params]``
            Labels in the order of ``parameters``.
        """
        ...


# --------------------------------------------------------------------------------------------
# the simulator
# --------------------------------------------------------------------------------------------
class EmulatorSimulator:
    r"""Noise-free training spectra from a spectrum emulator, rotated and shifted, in torch.

    Per call of `sample`: labels from ``prior``; flux from the emulator (A(Li) from
    ``li_fe`` and [Fe/H]); rotation with the label :math:`v\sin i`, radial-tangential
    macroturbulence :math:`\zeta` when the prior draws ``vmacro``, and a Gaussian residual radial
    velocity of standard deviation ``rv_sigma``, all in one pass of
    `~specutils_cinn.instruments.rotation.BinnedRotation`; the pixels of the model
    grid. Implements the simulator protocol of `specutils_cinn.training.train_model`
    (`SpectrumSimulator`).

    Macroturbulence (``LabelPrior(vmacro_range=...)``) is a *label* when ``"vmacro"`` is one of
    ``parameters``: the network learns to predict it. Otherwise it is a *nuisance* parameter:
    every spectrum still gets its own random :math:`\zeta`, but the label is not returned, so the
    network learns the other labels marginalized over the macroturbulence distribution (and
    :math:`v\sin i` no longer has to absorb the macroturbulence of real stars).

    Parameters
    ----------
    emulator : `~specutils_cinn.emulator.SpectrumEmulator`
        Labels to continuum-normalized flux after the line-spread function, before rotation.
    parameters : sequence of str
        Labels returned, in network order (default
        `~specutils_cinn.parameters.DEFAULT_PARAMETERS`); each must be drawn by the prior.
    prior : LabelPrior, optional
        Default `LabelPrior.from_emulator` with the default Kiel region. Must stay inside the
        emulator's training ranges.
    rv_sigma : float
        Standard deviation of the residual radial velocity in km/s (0: none). Not a label: it
        stands for the error of the radial-velocity correction of observed spectra.
    emulator_noise : float
        Standard deviation (continuum units) of Gaussian noise added to every pixel of every
        simulated spectrum, standing for the emulator's own error: without it the network
        learns detail of the emulator that Turbospectrum (and real) spectra do not have. It is
        not added to the uncertainty the network is given.
    emulator_error : array-like, shape ``[emulator.grid.npix]``, optional
        The emulator's error per pixel (e.g. `specutils_cinn.emulator.pixel_error` of its
        residuals on stars it was not fitted to). Gaussian noise of this standard deviation,
        added in quadrature to ``emulator_noise``, goes into each pixel instead: pixels the
        emulator gets right keep their information, pixels it gets wrong (cool-star molecular
        bands, strong-line wings, Li) are down-weighted. Shape ``[k, emulator.grid.npix]``
        with ``emulator_error_teff``.
    emulator_error_teff : sequence of float, optional
        Strictly increasing Teff (K) of the ``k`` rows of ``emulator_error``
        (`specutils_cinn.emulator.measure_pixel_error` with ``teff_nodes``): each spectrum
        gets the error variance interpolated linearly to its Teff
        (`specutils_cinn.emulator.hat_weights`), constant beyond the end nodes. The
        configuration's ``emulator_error`` file sets it when it holds an array ``teff``.
    limb_darkening, oversample : float
        Passed to `~specutils_cinn.instruments.rotation.BinnedRotation`.
    segments : sequence of str, optional
        Emulator grid segments that make up the model grid (default all).
    wavelength_range : (float, float), optional
        Keep only pixel centers inside this range (Angstrom). Cropping happens after rotation,
        so the kept pixels near the cut are exact.
    resolving_power : float or dict, optional
        Resolving power of the spectra (default: the emulator's metadata).
    provenance : dict, optional
        Extra provenance (line lists, LTE/NLTE, ...) merged into `provenance`.

    Attributes
    ----------
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        The model grid.
    resolving_power : float or dict
        From the emulator's metadata (per kept segment).
    """

    def __init__(
        self,
        emulator: SpectrumEmulator,
        parameters: Sequence[str] = DEFAULT_PARAMETERS,
        prior: LabelPrior | None = None,
        *,
        rv_sigma: float = 2.0,
        limb_darkening: float = 0.6,
        oversample: float = 2.0,
        segments: Sequence[str] | None = None,
        wavelength_range: Sequence[float] | None = None,
        resolving_power: float | dict[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
        emulator_noise: float = 0.0,
        emulator_error: Any = None,
        emulator_error_teff: Sequence[float] | None = None,
    ) -> None:
        self.emulator = emulator.eval()
        if not (math.isfinite(emulator_noise) and emulator_noise >= 0):
            raise ValueError(f"emulator_noise must be non-negative, got {emulator_noise!r}")
        self.emulator_noise = float(emulator_noise)
        noise2 = np.full((1, emulator.grid.npix), self.emulator_noise**2)
        self.emulator_error_teff = None
        if emulator_error_teff is not None:
            nodes = np.asarray(emulator_error_teff, dtype=np.float64)
            hat_weights(nodes[:1], nodes)  # checks: finite, 1-D, strictly increasing
            self.emulator_error_teff = nodes
        if emulator_error is not None:
            err = np.asarray(emulator_error, dtype=np.float64)
            rows = 1 if self.emulator_error_teff is None else self.emulator_error_teff.size
            want = (emulator.grid.npix,) if self.emulator_error_teff is None \
                else (rows, emulator.grid.npix)
            if err.shape != want or not np.all(np.isfinite(err) & (err >= 0)):
                raise ValueError(
                    f"emulator_error must hold finite non-negative values of shape {want} "
                    f"(one per emulator pixel" + ("" if rows == 1 else
                                                  f", for each of {rows} Teff nodes")
                    + f"), got shape {err.shape}")
            noise2 = noise2 + err.reshape(rows, -1)**2
        elif self.emulator_error_teff is not None:
            raise ValueError("emulator_error_teff needs emulator_error")
        self.prior = prior or LabelPrior.from_emulator(emulator)
        self.parameters = [str(p) for p in parameters]
        for p in self.parameters:
            parameter_unit(p)
        drawn = self.prior.label_names
        missing = [p for p in self.parameters if p not in drawn]
        if missing:
            raise ValueError(f"the prior does not draw {missing}; it draws {drawn}")
        needed = [n for n in emulator.label_names if n not in drawn and n != "a_li"]
        if needed or ("a_li" in emulator.label_names and "a_li" not in drawn):
            raise ValueError(f"the prior lacks emulator labels {needed or ['a_li']}")
        self._check_inside_emulator()
        if not rv_sigma >= 0:
            raise ValueError(f"rv_sigma must be non-negative, got {rv_sigma!r}")
        self.rv_sigma = float(rv_sigma)
        self.rotation = BinnedRotation(
            emulator.grid, limb_darkening=limb_darkening, oversample=oversample,
            max_vsini=max(self.prior.vsini_range[1], 1.0),
            max_shift=max(5.0 * self.rv_sigma, 1.0),
            max_vmacro=0.0 if self.prior.vmacro_range is None else self.prior.vmacro_range[1])
        self.grid, self._keep = crop_grid(emulator.grid, segments, wavelength_range)
        #: Standard deviation of the noise standing for the emulator's error, per model pixel
        #: (``[npix]``), or per Teff node of `emulator_error_teff` and pixel (``[k, npix]``).
        self.emulator_sigma = np.sqrt(noise2[:, self._keep]).astype(np.float32)
        if self.emulator_error_teff is None:
            self.emulator_sigma = self.emulator_sigma[0]
        self._sigma_cache: dict[torch.device, torch.Tensor] = {}
        meta = dict(emulator.metadata)
        rp = meta.get("resolving_power") if resolving_power is None else resolving_power
        if rp is None:
            raise ValueError("the emulator's metadata has no resolving_power; pass one")
        if isinstance(rp, dict) and "kind" not in rp:
            rp = {s.name: rp[s.name] for s in self.grid.segments}
        self.resolving_power = rp
        self.provenance: dict[str, Any] = {
            "source": "spectrum emulator (specutils_cinn.training.EmulatorSimulator), "
                      "fresh spectra every training step",
            "emulator": {
                "name": meta.get("name"),
                "description": meta.get("description"),
                "weights_sha256": meta.get("weights_sha256"),
                "architecture": {k: v for k, v in emulator.architecture.items() if k != "grid"},
                "instrument_setup": meta.get("setup", meta.get("instrument_setup")),
                "training_grid": meta.get("training_grid"),
                "accuracy_holdout": meta.get("accuracy_holdout"),
            },
            "prior": self.prior.to_dict(),
            "rotation": self.rotation.to_dict(),
            "macroturbulence": None if self.prior.vmacro_range is None else {
                "profile": "radial-tangential (Gray 2005; zeta_R = zeta_T, equal area fractions)",
                "distribution": "uniform", "range": list(self.prior.vmacro_range), "role":
                "label" if "vmacro" in self.parameters else "nuisance (marginalized)"},
            "radial_velocity": {"distribution": "normal", "sigma_kms": self.rv_sigma},
            "emulator_noise": self.emulator_noise,
            "emulator_error": None if emulator_error is None else {
                "median": float(np.median(self.emulator_sigma)),
                "p99": float(np.percentile(self.emulator_sigma, 99)),
                "max": float(self.emulator_sigma.max()),
                **({} if self.emulator_error_teff is None else {
                    "teff_nodes": self.emulator_error_teff.tolist(),
                    "median_per_node": np.median(self.emulator_sigma, axis=1).tolist(),
                    "p99_per_node": np.percentile(self.emulator_sigma, 99, axis=1).tolist()})},
            "model_grid": {"segments": None if segments is None else list(segments),
                           "wavelength_range": None if wavelength_range is None
                           else [float(w) for w in wavelength_range]},
            **dict(provenance or {}),
        }
        self._keep_cache: dict[torch.device, torch.Tensor] = {}

    #: Keys of the ``[simulator]`` table of a training configuration
    #: (`specutils_cinn.training.SIMULATOR_KEYS`).
    CONFIG_KEYS = SIMULATOR_KEYS

    @classmethod
    def from_config(cls, table: Mapping[str, Any], base: str | Path = ".") -> EmulatorSimulator:
        """Build a simulator from the ``[simulator]`` table of a training configuration.

        Parameters
        ----------
        table : mapping
            ``emulator`` (emulator directory, relative to ``base``; required), and optionally
            ``parameters``, ``vsini_range``, ``vmacro_range`` (uniform radial-tangential
            macroturbulence in km/s; default none), ``rv_sigma``, ``emulator_noise``,
            ``emulator_error`` (an ``.npz`` file with array ``sigma`` on the emulator grid, as
            written by ``specutils-cinn emulator error``), ``limb_darkening``, ``oversample``,
            ``segments``, ``wavelength_range``, ``ranges`` (narrower uniform label ranges),
            ``kiel_region`` (``teff_range``, ``lower``, ``upper`` of a
            `~specutils_cinn.synthesis.design.KielRegion`) and ``provenance`` (free-form,
            recorded). ``holdout`` and ``selection`` are read by
            `specutils_cinn.training.train_from_config`.
        base : path-like
            Directory that relative paths start from (the configuration file's).

        Returns
        -------
        EmulatorSimulator

        Raises
        ------
        ValueError
            On unknown keys or a missing emulator path.
        """
        unknown = sorted(set(table) - set(cls.CONFIG_KEYS))
        if unknown:
            raise ValueError(f"unknown [simulator] option(s) {unknown}; known: "
                             f"{sorted(cls.CONFIG_KEYS)}")
        if "emulator" not in table:
            raise ValueError("[simulator] needs 'emulator', the emulator directory")
        path = Path(base) / str(table["emulator"])
        emu = load_emulator(path)
        kiel = table.get("kiel_region")
        region = None
        if kiel is not None:
            default = KielRegion()
            region = KielRegion(
                tuple(kiel.get("teff_range", default.teff_range)),
                tuple(tuple(k) for k in kiel.get("lower", default.lower)),
                tuple(tuple(k) for k in kiel.get("upper", default.upper)))
        error = error_teff = None
        if "emulator_error" in table:
            with np.load(Path(base) / str(table["emulator_error"])) as f:
                error = f["sigma"]
                error_teff = f["teff"] if "teff" in f.files else None
        prior = LabelPrior.from_emulator(
            emu, region, tuple(table.get("vsini_range", (0.0, 25.0))),
            {k: tuple(v) for k, v in table.get("ranges", {}).items()},
            None if table.get("vmacro_range") is None else tuple(table["vmacro_range"]))
        return cls(
            emu, table.get("parameters", DEFAULT_PARAMETERS), prior,
            rv_sigma=float(table.get("rv_sigma", 2.0)),
            emulator_noise=float(table.get("emulator_noise", 0.0)),
            emulator_error=error, emulator_error_teff=error_teff,
            limb_darkening=float(table.get("limb_darkening", 0.6)),
            oversample=float(table.get("oversample", 2.0)),
            segments=table.get("segments"), wavelength_range=table.get("wavelength_range"),
            provenance={"emulator_path": str(path), **dict(table.get("provenance", {}))},
        )

    def _check_inside_emulator(self) -> None:
        emu = dict(zip(self.emulator.label_names, self.emulator.label_ranges, strict=True))
        prior = self.prior.parameter_ranges()
        for name, (lo, hi) in emu.items():
            if name not in prior:
                continue
            p_lo, p_hi = prior[name]
            tol = 1e-9 * (hi - lo)
            if p_lo < lo - tol or p_hi > hi + tol:
                raise ValueError(
                    f"prior range of {name!r} ({p_lo:g}, {p_hi:g}) leaves the emulator's "
                    f"training range ({lo:g}, {hi:g})")

    @property
    def parameter_ranges(self) -> dict[str, tuple[float, float]]:
        """Prior range of each of `parameters`."""
        ranges = self.prior.parameter_ranges()
        return {p: ranges[p] for p in self.parameters}

    def sample_labels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Labels only, ``[n, n_params]`` float64 on the generator's device."""
        lab = self.prior.sample(n, generator)
        return torch.stack([lab[p] for p in self.parameters], dim=1)

    def _emulator_on(self, device: torch.device) -> SpectrumEmulator:
        if self.emulator.device != device:
            self.emulator = self.emulator.to(device)
        return self.emulator

    def simulate(self, labels: Mapping[str, torch.Tensor], rv: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Noise-free flux on the model grid for given labels.

        Parameters
        ----------
        labels : mapping of str to `torch.Tensor`
            ``[n]`` tensors of every emulator label (``a_li`` may be replaced by ``li_fe``)
            and ``vsini`` (km/s); the device of ``vsini`` is used. An optional ``vmacro``
            (km/s, at most the top of the prior's ``vmacro_range``) adds macroturbulence.
        rv : `torch.Tensor`, shape ``[n]``, optional
            Radial velocities in km/s.

        Returns
        -------
        `torch.Tensor`
            float32 ``[n, npix]``.
        """
        dev = labels["vsini"].device
        emu = self._emulator_on(dev)
        values = emulator_label_values(emu.label_names, labels)
        x = torch.stack([v.to(dev, torch.float64) for v in values], dim=1)
        with torch.no_grad():
            flux = emu(x, clamp=True)
            flux = self.rotation(flux, labels["vsini"], rv, labels.get("vmacro"))
        if dev not in self._keep_cache:
            self._keep_cache[dev] = torch.as_tensor(self._keep, device=dev)
        return flux.index_select(1, self._keep_cache[dev])

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` noise-free spectra and their labels.

        Parameters
        ----------
        n : int
            Number of spectra.
        generator : `torch.Generator`
            Source of randomness; the work runs on its device.

        Returns
        -------
        flux : `torch.Tensor`, float32, shape ``[n, npix]``
            Continuum-normalized flux on `grid`.
        labels : `torch.Tensor`, float64, shape ``[n, n_params]``
            Labels in the order of `parameters`.
        """
        lab = self.prior.sample(n, generator)
        rv = None
        if self.rv_sigma > 0:
            rv = self.rv_sigma * torch.randn(n, generator=generator, device=generator.device,
                                             dtype=torch.float64)
        flux = self.simulate(lab, rv)
        if np.any(self.emulator_sigma > 0):
            dev = flux.device
            if dev not in self._sigma_cache:
                self._sigma_cache[dev] = torch.as_tensor(self.emulator_sigma, device=dev)
            sigma = self._sigma_cache[dev]
            if self.emulator_error_teff is not None:  # variance interpolated in Teff
                w = hat_weights(lab["teff"], self.emulator_error_teff).to(dev, flux.dtype)
                sigma = (w @ sigma.square()).sqrt()
            flux = flux + sigma * torch.randn(
                flux.shape, generator=generator, device=dev, dtype=flux.dtype)
        return flux, torch.stack([lab[p] for p in self.parameters], dim=1)
