"""The public face of the package: spectra in, posterior summaries out.

This module is longer than the package's usual ~600 lines because it is the user-facing class:
every public method carries its full user documentation; the work is done elsewhere
(`~specutils_cinn.inputs`, `~specutils_cinn.sampling`, `~specutils_cinn.quality`,
`~specutils_cinn.results`, `~specutils_cinn.fit_check`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from astropy import units as u
from astropy.table import QTable

from . import __version__
from ._checks import MAX_SEED as MAX_SEED  # re-exported: the largest seed
from .calibration import PosteriorCalibration
from .devices import has_bfloat16_hardware, resolve_device
from .fit_check import EmulatedSpectrum, FitStatistics, emulated_fit, fit_statistics
from .inputs import PreparedSpectra, prepare_spectra
from .instruments import InstrumentSetup
from .io import read_paths, spectra_medium
from .model import CINNModel
from .options import PredictionOptions
from .parameters import PHYSICAL_MINIMUM, parameter_values
from .quality import EDGE_FRACTION as EDGE_FRACTION  # re-exported for one release
from .quality import output_flags, poor_fit_threshold, row_resolving_power, velocity_offset
from .results import PosteriorSummary, SpectrumDiagnostics, samples_table, summary_table
from .sampling import draw_batches, inferred_rows

__all__ = ["CINNParameterEstimator"]


class CINNParameterEstimator:
    """Posterior estimates of stellar parameters from spectra, with a trained cINN.

    Parameters
    ----------
    model : `~specutils_cinn.model.CINNModel`
        A loaded model (see `from_pretrained` for the usual way to get one).
    device : {"auto", "cpu", "cuda"} or `torch.device`, optional
        Where the network runs by default; ``"auto"`` picks a GPU when there is one.

    Raises
    ------
    TypeError
        If ``model`` is not a `~specutils_cinn.model.CINNModel`.
    ValueError
        If the device is not available.
    specutils_cinn.model.ModelLoadError
        If the model's spectrum emulator file is missing, corrupt (its SHA-256 differs from
        the metadata) or does not fit (a `ValueError`): a lazily loaded emulator is read
        here, before any spectrum is processed.

    Examples
    --------
    >>> from specutils_cinn import CINNParameterEstimator
    >>> est = CINNParameterEstimator.from_pretrained()  # the bundled default model
    >>> est.parameters[:3]
    ['teff', 'logg', 'fe_h']
    """

    def __init__(self, model: CINNModel, *, device: str | torch.device = "auto") -> None:
        if not isinstance(model, CINNModel):
            raise TypeError(f"model must be a CINNModel, got {type(model).__name__}")
        self.model = model
        self.device = resolve_device(device)
        self.model.network.eval()
        self.set_sampling_precision("auto")
        #: Emulated solar template of the VELOCITY_OFFSET check (built on first use).
        self._velocity_template: np.ndarray | None = None
        if model.metadata.emulator is not None:
            # read (and SHA-256 check) a lazily loaded emulator now, not after inference
            _ = model.emulator

    def compile_sampling(self, enable: bool = True) -> CINNParameterEstimator:
        """Draw posteriors with a compiled network (`torch.compile`), for long runs.

        The reverse pass of the flow, where inference spends most of its time at many draws
        per spectrum, is compiled on the first call of `predict` or `sample_posterior` after
        this one: that call takes tens of seconds longer (a C++ compiler is needed on CPU,
        Triton on CUDA), later calls are faster (``benchmarks/bench_predict.py --compile``
        measures it next to the uncompiled estimator). Draws agree with uncompiled ones to
        float32 rounding. Worth it for thousands of spectra, not for a few. If compilation
        fails, a `RuntimeWarning` says so and the uncompiled network is used.

        Parameters
        ----------
        enable : bool
            False goes back to the uncompiled network.

        Returns
        -------
        CINNParameterEstimator
            ``self``, so that ``CINNParameterEstimator.from_pretrained().compile_sampling()``
            works.
        """
        self.model.network.compile_sampling(enable)
        return self

    @property
    def sampling_compiled(self) -> bool:
        """Whether posterior draws use a compiled network (`compile_sampling`)."""
        return bool(getattr(self.model.network, "sampling_compiled", False))

    def set_sampling_precision(self, precision: str = "auto") -> CINNParameterEstimator:
        """Draw posteriors with the flow's hidden layers in bfloat16 where that is faster.

        ``"bfloat16"`` runs the hidden-to-hidden products of the flow's subnets (nearly all
        the work of drawing at many draws per spectrum) in bfloat16; the latent draws, the
        couplings' clamps, exponentials and shifts, the quantiles and everything else stay
        float32 (`~specutils_cinn.flows.ConditionalINN.set_sampling_precision`).
        ``python scripts/precision_check.py`` measures how far that moves the posterior
        quantiles of held-out spectra, in units of the Monte-Carlo error of float32 draws
        (docs: :ref:`precision`). ``"auto"`` picks ``"bfloat16"`` on hardware that does it
        natively (`~specutils_cinn.devices.has_bfloat16_hardware`: CUDA GPUs with bfloat16,
        CPUs with AMX or AVX-512 BF16) and ``"float32"`` elsewhere, where bfloat16 would only be
        slower. The output table records the precision used (``meta["PRECISN"]``).

        Parameters
        ----------
        precision : {"auto", "float32", "bfloat16"}
            The precision.

        Returns
        -------
        CINNParameterEstimator
            ``self``.

        Raises
        ------
        ValueError
            If ``precision`` is not one of the above.
        """
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got "
                             f"{precision!r}")
        if precision == "auto":
            precision = "bfloat16" if has_bfloat16_hardware(self.device) else "float32"
        self.model.network.set_sampling_precision(precision)
        return self

    @property
    def sampling_precision(self) -> str:
        """The precision of the flow's hidden layers in posterior draws
        (`set_sampling_precision`)."""
        return str(getattr(self.model.network, "sampling_precision", "float32"))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        progressbar: bool = False,
    ) -> CINNParameterEstimator:
        """Load a registered model, a bundled model or a model directory.

        Names and paths are never confused: a registered name always resolves through the
        registry, and a local model must be given as a path. ``name`` is a **path** if it is
        a `pathlib.Path` (any `os.PathLike`), or a string that contains a path separator
        (``"./my-model"``, ``"models/hr"``, ``"/data/m/metadata.json"``), is ``"."`` or
        ``".."``, or starts with ``~``. Any other string is a **registry name**, even when a
        folder of that name exists in the working directory (use ``"./4most-hr"`` for that
        folder). An empty string is refused.

        A registered model is checked against the registry on every load: the SHA-256 of its
        metadata, weights and emulator must match the registered ones (a mismatch raises
        `~specutils_cinn.model.ModelIntegrityError` naming the file). A model loaded from a
        path has nothing to be compared with; its files are checked against each other and its
        `~specutils_cinn.model.CINNModel.digest` (``MODELDIG`` in ``table.meta``) tells which
        model it is.

        Parameters
        ----------
        name : str or path-like, optional
            A registered model name or alias (``"4most-hr"``, ``"4most-lr"``, or a versioned
            name; see ``specutils-cinn models``), or the path of a model directory or metadata
            file (see above). None loads the default model shipped inside the package, without
            network access.
        device : {"auto", "cpu", "cuda"} or `torch.device`, optional
            Default device for inference.
        cache_dir : path-like, optional
            Download cache; default is ``$SPECUTILS_CINN_CACHE`` or the user cache directory.
        progressbar : bool, optional
            Show a download progress bar.

        Returns
        -------
        CINNParameterEstimator

        Raises
        ------
        ValueError
            If ``name`` is an empty string.
        specutils_cinn.model.ModelNotFoundError
            If a name is not registered (a `ValueError`).
        specutils_cinn.model.ModelLoadError
            If the model's files are missing, too large, malformed, do not fit each other, or
            (`~specutils_cinn.model.ModelIntegrityError`) differ from the registry or the
            metadata (all `ValueError`).
        specutils_cinn.model.ModelDownloadError
            If a registered model must be downloaded and cannot be (an `OSError`).
        """
        from .model import DEFAULT_MODEL, load_model

        if name is None:
            name = DEFAULT_MODEL
        model = load_model(name, cache_dir=cache_dir, progressbar=progressbar)
        return cls(model, device=device)

    # ------------------------------------------------------------------ description
    @property
    def parameters(self) -> list[str]:
        """Names of the parameters the model predicts, in column order."""
        return list(self.model.metadata.parameter_names)

    @property
    def units(self) -> dict[str, u.UnitBase]:
        """Unit of each predicted parameter."""
        return dict(zip(self.parameters, self.model.metadata.units, strict=True))

    @property
    def instrument_setup(self) -> InstrumentSetup:
        """The model's setup: its pixel grid and resolving power.

        An `~specutils_cinn.instruments.InstrumentSetup`; pass it to
        `~specutils_cinn.instruments.degrade_spectrum` to bring a spectrum of higher resolution
        to the model's setup.
        """
        md = self.model.metadata
        return InstrumentSetup(md.full_name, md.grid, md.resolving_power)

    def __repr__(self) -> str:
        md = self.model.metadata
        return (
            f"<{type(self).__name__} model={md.full_name!r} parameters={self.parameters} "
            f"device={self.device.type!r}>"
        )

    # ------------------------------------------------------------------ inference
    def predict(
        self,
        spectra: Any,
        n_samples: int = 1000,
        quantiles: Sequence[float] = (0.16, 0.5, 0.84),
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        seed: int | None = None,
        radial_velocity: u.Quantity | None = None,
        progress: bool | None = None,
        *,
        medium: str | None = None,
        snr: float | np.ndarray | str | None = None,
        normalize: bool | str = "auto",
        fit_chi2_threshold: float | None = None,
        calibrated: bool = True,
    ) -> QTable:
        """Posterior medians, quantiles and standard deviations, one row per spectrum.

        Parameters
        ----------
        spectra : Spectrum, SpectrumCollection, SpectrumList, file path or list of them
            The spectra (specutils objects). A spectrum with N-D flux gives one row per
            spectrum it holds, in C order; lists give their items' rows in order. File paths
            are read with ``Spectrum.read(path)`` (see :ref:`readers`).
        n_samples : int, optional
            Posterior draws per spectrum.
        quantiles : sequence of float, optional
            Quantile levels in (0, 1) to report as ``<p>_p<100 q>`` columns.
        batch_size : int, optional
            Spectra per network call; by default chosen so that ``batch_size * n_samples``
            stays below about 262,000 rows.
        device : {"auto", "cpu", "cuda"} or `torch.device`, optional
            Overrides the estimator's device for this call.
        seed : int, optional
            Seed of the latent draws, an integer from 0 to 2**63 - 1. None draws a fresh
            seed, recorded in ``table.meta``. Each spectrum's draws come from its own random
            stream, keyed by the seed and a hash of the spectrum's data
            (`~specutils_cinn.inputs.PreparedSpectra.content_hash`): a row does not depend on
            the other spectra, their order or ``batch_size`` (up to floating-point rounding,
            below 1e-4 posterior standard deviations), and can be reproduced alone. Identical
            spectra get identical draws. Results are reproducible for the same seed, spectrum,
            arguments and device (CPU and CUDA streams differ).
        radial_velocity : `~astropy.units.Quantity`, optional
            Scalar or one value per spectrum; overrides the spectra's own radial velocity.
        progress : bool, callable or None, optional
            Show a progress bar; None shows it when standard error is a terminal. A callable
            is called as ``progress(done, total)`` after each batch instead (spectra inferred
            so far, out of the spectra with usable data), e.g. to log one line per batch.
        medium : {"air", "vacuum"}, optional
            Medium of the input wavelengths. By default each spectrum's ``meta["medium"]``
            (set by the readers of `specutils_cinn.io`), else air (4MOST delivers air
            wavelengths); a `ValueError` if the spectra disagree.
        snr : float, array, "estimate" or None, optional
            S/N per Angstrom for spectra without uncertainties, or ``"estimate"`` for the
            DER_SNR estimate from the flux itself (flagged ``NOISE_ESTIMATED``).
        normalize : {"auto", True, False}, optional
            Continuum normalization of the input (see :ref:`inputs`).
        fit_chi2_threshold : float, optional
            ``POOR_FIT`` is set where ``fit_chi2`` exceeds this; default the model's
            ``metadata.emulator.chi2_threshold``. Ignored for models without an emulator
            (``fit_chi2`` is then NaN and ``POOR_FIT`` never set).
        calibrated : bool, optional
            Apply the model's posterior calibration (its ``posterior_calibration``, which
            widens the draws about their median; see :ref:`posterior-calibration`). False gives the
            network's own draws. Medians do not depend on it.

        Returns
        -------
        `~astropy.table.QTable`
            Columns described in :ref:`output-table`.

        Raises
        ------
        ValueError
            If an argument is invalid (checked by `~specutils_cinn.options.PredictionOptions`
            before any file is read or spectrum processed), or an input cannot be used as a
            whole (see `~specutils_cinn.inputs.prepare_spectra`: a spectral axis that is no
            wavelength axis, a flux unit that is no flux, a spectrum without uncertainty and
            no ``snr``). Spectra that are merely bad (no overlap, no valid
            pixel) are not errors: they get a row of NaN and their flags.
        TypeError
            If an input is not a specutils spectrum, collection or list of them.

        Notes
        -----
        For a model with a spectrum emulator, the spectrum at the posterior median is
        emulated (rotation included), multiplied per grid segment by the low-order polynomial
        that fits the prepared input best, and compared with the input on its valid pixels:
        ``fit_chi2 = mean((f - f_emu)**2 / (sigma**2 + floor**2))``, ``floor`` being the
        emulator's error measured on held-out synthetic spectra. The same fit with the
        polynomial alone (a featureless continuum) gives ``feature_sigma``, the significance of
        the stellar features; ``NO_FEATURES`` is set below 5. See :ref:`output-table`.
        """
        opts = PredictionOptions(
            n_samples=n_samples, quantiles=quantiles, batch_size=batch_size, device=device,
            seed=seed, radial_velocity=radial_velocity, progress=progress, medium=medium,
            snr=snr, normalize=normalize, fit_chi2_threshold=fit_chi2_threshold,
            calibrated=calibrated,
        ).with_seed()
        dev = opts.on_device(self.device)
        prepared = self._prepare(spectra, opts)
        levels = opts.quantiles
        n, d, nq = prepared.n_rows, len(self.parameters), len(levels)
        median = np.full((n, d), np.nan)
        quant = np.full((n, nq, d), np.nan)
        std = np.full((n, d), np.nan)
        q1684 = np.full((n, 2, d), np.nan)
        q_all = torch.tensor([0.5, *levels, 0.16, 0.84], dtype=torch.float32, device=dev)
        # The calibration is an affine stretch per spectrum and parameter, so it is applied to
        # the quantiles and standard deviations of the raw draws (same numbers, no extra pass).
        calibration = self._calibration(opts.calibrated)
        for rows, draws in self._draw_batches(prepared, opts, dev, None):
            qs = torch.quantile(draws, q_all, dim=1)  # [1 + Q + 2, B, D], on the device
            sd = draws.std(dim=1)
            if calibration is not None:
                k = calibration.widening(qs[-2], qs[-1], self.parameters)
                qs = qs[0] + (qs - qs[0]) * k
                sd = sd * k
            median[rows] = qs[0].cpu().numpy()
            quant[rows] = qs[1 : 1 + nq].permute(1, 0, 2).cpu().numpy()
            std[rows] = sd.cpu().numpy()
            q1684[rows] = qs[-2:].permute(1, 0, 2).cpu().numpy()
        fit = self._fit_statistics(prepared, median, dev)
        k = self._mismatch_widening(calibration, q1684[:, 0], q1684[:, 1], fit,
                                    prepared.coverage)
        quant = median[:, None, :] + (quant - median[:, None, :]) * k[:, None, :]
        std = std * k
        # Physical support: clipping commutes with quantiles, so clipped quantiles are the
        # quantiles of the clipped draws that sample_posterior returns.
        lower = self._physical_minimum()
        median = np.maximum(median, lower)
        quant = np.maximum(quant, lower)
        meta = self._meta(opts.n_samples, opts.seed, dev, opts.fit_chi2_threshold,
                          opts.calibrated)
        meta["QUANTILE"] = list(levels)
        return summary_table(
            self.parameters,
            self.model.metadata.units,
            PosteriorSummary(median, quant, levels, std),
            self._diagnostics(prepared, median, fit, opts),
            meta=meta,
            unconstrained=self.model.metadata.unconstrained,
        )

    def sample_posterior(
        self,
        spectra: Any,
        n_samples: int = 1000,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        seed: int | None = None,
        radial_velocity: u.Quantity | None = None,
        progress: bool | None = None,
        *,
        medium: str | None = None,
        snr: float | np.ndarray | str | None = None,
        normalize: bool | str = "auto",
        fit_chi2_threshold: float | None = None,
        calibrated: bool = True,
    ) -> QTable:
        """Full posterior draws, one row per spectrum.

        Parameters are as for `predict`. The same seed and ``calibrated`` give the same draws
        that `predict` summarizes, whatever the batch size.

        Returns
        -------
        `~astropy.table.QTable`
            Column ``<p>`` holds an ``(N, n_samples)`` Quantity of draws of each parameter,
            plus ``snr``, ``coverage``, ``fit_chi2`` (at the posterior median, as in `predict`)
            and ``flags``. Rows without usable data hold NaN.
        """
        opts = PredictionOptions(
            n_samples=n_samples, batch_size=batch_size, device=device, seed=seed,
            radial_velocity=radial_velocity, progress=progress, medium=medium, snr=snr,
            normalize=normalize, fit_chi2_threshold=fit_chi2_threshold, calibrated=calibrated,
        ).with_seed()
        dev = opts.on_device(self.device)
        prepared = self._prepare(spectra, opts)
        n_samples = opts.n_samples
        calibration = self._calibration(opts.calibrated)
        draws_all = np.full(
            (prepared.n_rows, n_samples, len(self.parameters)), np.nan, dtype=np.float32
        )
        median = np.full((prepared.n_rows, len(self.parameters)), np.nan)
        q16, q84 = median.copy(), median.copy()
        levels = torch.tensor([0.16, 0.5, 0.84], device=dev)
        for rows, draws in self._draw_batches(prepared, opts, dev, calibration):
            draws_all[rows] = draws.cpu().numpy()
            qs = torch.quantile(draws, levels.to(draws.dtype), dim=1).cpu().numpy()
            q16[rows], median[rows], q84[rows] = qs
        fit = self._fit_statistics(prepared, median, dev)
        k = self._mismatch_widening(calibration, q16, q84, fit, prepared.coverage)
        draws_all = (median[:, None, :] + (draws_all - median[:, None, :]) * k[:, None, :]
                     ).astype(np.float32)
        draws_all = np.maximum(draws_all, self._physical_minimum().astype(np.float32))
        return samples_table(
            self.parameters,
            self.model.metadata.units,
            draws_all,
            self._diagnostics(prepared, median, fit, opts),
            meta=self._meta(n_samples, opts.seed, dev, opts.fit_chi2_threshold, opts.calibrated),
            unconstrained=self.model.metadata.unconstrained,
        )

    def emulated_spectrum(
        self,
        spectrum: Any,
        parameters: Any,
        *,
        radial_velocity: u.Quantity | None = None,
        medium: str | None = None,
        snr: float | str | None = None,
        normalize: bool | str = "auto",
        device: str | torch.device | None = None,
    ) -> EmulatedSpectrum:
        """One observed spectrum next to the model's emulated spectrum at given parameters.

        This is the comparison behind ``fit_chi2`` (:ref:`fit-chi2`): the input as the network
        saw it (on the model's grid, in the rest frame, continuum normalized) and the spectrum
        the model's emulator gives at ``parameters``, times the continuum polynomial per
        segment that best matches the input. `specutils_cinn.plotting.plot_spectrum_fit` plots
        it.

        Parameters
        ----------
        spectrum : Spectrum or file path
            One spectrum (a `~specutils.Spectrum` holding several gives a `ValueError`: index
            it, e.g. ``spectrum[3]``).
        parameters : `~astropy.table.Row`, mapping or array-like
            The parameter values, usually the spectrum's row of the `predict` table
            (posterior medians; masked values of unconstrained parameters are used as they
            are); or a mapping from parameter name to value (a `~astropy.units.Quantity` or a
            number in the unit of `units`); or one number per parameter in `parameters` order.
        radial_velocity, medium, snr, normalize
            As in `predict`; pass the same values.
        device : {"auto", "cpu", "cuda"} or `torch.device`, optional
            Overrides the estimator's device.

        Returns
        -------
        `~specutils_cinn.fit_check.EmulatedSpectrum`
            ``wavelength``, ``flux``, ``uncertainty``, ``emulated``, ``mask`` and
            ``error_floor``, each over the model's pixels.

        Raises
        ------
        ValueError
            If an argument is invalid (checked first, as in `predict`), the model has no
            emulator, the input holds more than one spectrum, or a parameter value is missing
            or not finite.
        """
        opts = PredictionOptions(radial_velocity=radial_velocity, medium=medium, snr=snr,
                                 normalize=normalize, device=device)
        fe = self.model.emulator
        if fe is None:
            raise ValueError(
                f"model {self.model.metadata.full_name!r} has no spectrum emulator"
            )
        values = parameter_values(parameters, self.parameters, self.model.metadata.units)
        prepared = self._prepare(spectrum, opts)
        if prepared.n_rows != 1:
            raise ValueError(
                f"emulated_spectrum takes one spectrum, got {prepared.n_rows}; index the "
                "input, e.g. spectrum[i]"
            )
        emulated, used = emulated_fit(fe, self.parameters, values[None, :], prepared.flux,
                                      prepared.sigma, prepared.valid,
                                      device=opts.on_device(self.device),
                                      vsini_max=self._vsini_max(),
                                      normalized=prepared.normalized)
        valid = prepared.valid[0]
        floor = np.full(valid.shape, np.nan)
        floor[fe.model_index] = fe.floor_at(self.parameters, values[None, :])[0]
        return EmulatedSpectrum(
            wavelength=self.model.metadata.grid.wavelength,
            flux=np.where(valid, prepared.flux[0], np.nan),
            uncertainty=np.where(valid, prepared.sigma[0], np.nan),
            emulated=emulated[0],
            mask=~used[0],
            error_floor=floor,
        )

    def prepare(
        self,
        spectra: Any,
        *,
        radial_velocity: u.Quantity | None = None,
        medium: str | None = None,
        snr: float | str | None = None,
        normalize: bool | str = "auto",
    ) -> PreparedSpectra:
        """The spectra as the network sees them: on the model's grid, in the rest frame, in the
        model's normalization, with uncertainties, valid-pixel masks and S/N.

        This is the first step of `predict`, for inspecting inputs or computing statistics
        on them (e.g. `fit_statistics` at known labels, as the ``POOR_FIT`` calibration does).

        Parameters
        ----------
        spectra : Spectrum, SpectrumCollection, SpectrumList, file path or sequence of these
            As in `predict`.
        radial_velocity, medium, snr, normalize
            As in `predict`.

        Returns
        -------
        `~specutils_cinn.inputs.PreparedSpectra`
            One row per input spectrum, in input order.

        Raises
        ------
        ValueError
            If an option is invalid or a spectrum cannot be brought to the model's grid.
        """
        opts = PredictionOptions(radial_velocity=radial_velocity, medium=medium, snr=snr,
                                 normalize=normalize)
        return self._prepare(spectra, opts)

    def fit_statistics(
        self,
        prepared: PreparedSpectra,
        values: np.ndarray,
        *,
        device: str | torch.device | None = None,
    ) -> FitStatistics:
        """Goodness of fit of prepared spectra against the emulated spectrum at given values.

        ``predict`` computes it at the posterior medians (``fit_chi2``, ``feature_sigma``);
        here the parameter values are chosen by the caller, e.g. the true labels of held-out
        synthetic spectra.

        Parameters
        ----------
        prepared : `~specutils_cinn.inputs.PreparedSpectra`
            From `prepare`.
        values : numpy.ndarray, shape ``(N, len(parameters))``
            One value per row of ``prepared`` and per parameter, in `parameters` order and
            `units`.
        device : {"auto", "cpu", "cuda"}, `torch.device` or None, optional
            Where the emulator runs; None: the estimator's device.

        Returns
        -------
        `~specutils_cinn.fit_check.FitStatistics`
            All NaN when the model has no emulator.

        Raises
        ------
        ValueError
            If ``values`` does not have one row per spectrum and one column per parameter.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (prepared.n_rows, len(self.parameters)):
            raise ValueError(f"values must have shape ({prepared.n_rows}, "
                             f"{len(self.parameters)}), one row per spectrum and one column "
                             f"per parameter; got {values.shape}")
        dev = self.device if device is None else resolve_device(device)
        return self._fit_statistics(prepared, values, dev)

    # ------------------------------------------------------------------ internals
    def _prepare(self, spectra: Any, options: PredictionOptions) -> PreparedSpectra:
        """Read file paths and bring the spectra to the model's grid, in its convention."""
        radial_velocity, medium, snr = options.radial_velocity, options.medium, options.snr
        normalize = options.normalize
        spectra = read_paths(spectra)  # file paths: Spectrum.read
        if medium is None:  # from meta["medium"], which the readers of specutils_cinn.io set
            medium = spectra_medium(spectra)
        md = self.model.metadata
        # a pseudo-continuum model saw spectra divided by this very normalizer: "auto" applies
        # it to every input, normalized or not, so that all reach the network in the training
        # convention
        prepared = prepare_spectra(
            spectra,
            md.grid,
            radial_velocity=radial_velocity,
            medium=medium,
            snr=snr,
            pixel_mask=md.pixel_mask,
            **md.normalization.prepare_arguments(normalize),
        )
        rp = row_resolving_power(spectra, prepared)
        if rp is not None:
            prepared = dataclasses.replace(prepared, resolving_power=rp)
        return prepared

    def _draw_batches(
        self,
        prepared: PreparedSpectra,
        options: PredictionOptions,
        device: torch.device,
        calibration: PosteriorCalibration | None = None,
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield (row indices, physical-unit draws [B, S, D] on ``device``) per batch."""
        return draw_batches(self.model, prepared, options, device, calibration)

    def _calibration(self, calibrated: bool) -> PosteriorCalibration | None:
        """The model's posterior calibration if ``calibrated`` (and it has one), else None."""
        return self.model.metadata.posterior_calibration if calibrated else None

    def _physical_minimum(self) -> np.ndarray:
        """[D] lower end of each parameter's physical support (-inf where unbounded)."""
        return np.array([PHYSICAL_MINIMUM.get(p, -np.inf) for p in self.parameters])

    def _mismatch_widening(
        self, calibration: PosteriorCalibration | None, q16: np.ndarray, q84: np.ndarray,
        fit: FitStatistics, coverage: np.ndarray,
    ) -> np.ndarray:
        """[N, D] factors widening the calibrated posteriors for model mismatch (1: none)."""
        ones = np.ones(q16.shape)
        if calibration is None or not calibration.mismatch or fit.mismatch is None:
            return ones
        k = calibration.mismatch_widening(
            torch.from_numpy(np.nan_to_num(q16)), torch.from_numpy(np.nan_to_num(q84)),
            torch.from_numpy(np.asarray(fit.mismatch, dtype=np.float64)), self.parameters,
            coverage=torch.from_numpy(np.asarray(coverage, dtype=np.float64)),
        ).numpy()
        return np.where(np.isfinite(k), k, ones)

    def _fit_statistics(
        self, prepared: PreparedSpectra, median: np.ndarray, device: torch.device
    ) -> FitStatistics:
        """Goodness of fit of each row against its emulated spectrum (NaN if no emulator)."""
        fe = self.model.emulator
        if fe is None:
            nan = np.full(prepared.n_rows, np.nan)
            return FitStatistics(nan, nan.copy(), nan.copy())
        return fit_statistics(fe, self.parameters, median, prepared.flux, prepared.sigma,
                              prepared.valid, device=device, vsini_max=self._vsini_max(),
                              normalized=prepared.normalized)

    def _vsini_max(self) -> float | None:
        """Top of vsini's training range (the emulator clips to it); None without vsini."""
        if "vsini" not in self.parameters:
            return None
        return self.model.metadata.ranges[self.parameters.index("vsini")][1]

    def _diagnostics(
        self,
        prepared: PreparedSpectra,
        median: np.ndarray,
        fit: FitStatistics,
        options: PredictionOptions,
    ) -> SpectrumDiagnostics:
        """The per-spectrum columns of the results: S/N, coverage, fit and flags."""
        return SpectrumDiagnostics(
            snr=prepared.snr,
            coverage=prepared.coverage,
            flags=self._output_flags(prepared, median, fit, options.fit_chi2_threshold),
            fit_chi2=fit.chi2,
            feature_sigma=fit.feature_sigma,
            fit_mismatch=fit.mismatch,
        )

    def _output_flags(
        self,
        prepared: PreparedSpectra,
        median: np.ndarray,
        fit: FitStatistics | None = None,
        fit_chi2_threshold: float | None = None,
    ) -> np.ndarray:
        """[N] flags of the output rows (`specutils_cinn.quality.output_flags`)."""
        md = self.model.metadata
        return output_flags(md, prepared, median, fit=fit,
                            threshold=poor_fit_threshold(md, fit_chi2_threshold),
                            offset=self._velocity_offset(prepared))

    def _velocity_offset(self, prepared: PreparedSpectra) -> np.ndarray:
        """[N] rows flagged VELOCITY_OFFSET; the emulated template is built on first use."""
        if (self._velocity_template is None and self.model.emulator is not None
                and inferred_rows(prepared).any()):
            from .rv import emulated_template

            self._velocity_template = emulated_template(self.model, None)
        return velocity_offset(self.model, prepared, self._velocity_template)

    def _meta(
        self,
        n_samples: int,
        seed: int,
        device: torch.device,
        fit_chi2_threshold: float | None = None,
        calibrated: bool = True,
    ) -> dict[str, Any]:
        """The ``table.meta`` of a results table (see :ref:`output-table`)."""
        md = self.model.metadata
        threshold = poor_fit_threshold(md, fit_chi2_threshold)
        extra = {} if threshold is None else {"FITTHR": threshold}
        extra["POSTCAL"] = self._calibration(calibrated) is not None
        if md.unconstrained:
            extra["UNCONSTR"] = " ".join(md.unconstrained)
        if self.model.registry_name is not None:
            source = "registry"
        elif self.model.digest is not None:
            source = "local"
        else:
            source = "unsaved"
        return {
            "MODEL": md.full_name,
            "MODELVER": md.version,
            "MODELSHA": self.model.sha256 or "unsaved",
            "MODELDIG": self.model.digest or "unsaved",
            "MODELSRC": source,
            "NSAMPLES": int(n_samples),
            "SEED": int(seed),
            "DEVICE": device.type,
            "PRECISN": self.sampling_precision,
            "PKGVER": __version__,
            **extra,
        }
