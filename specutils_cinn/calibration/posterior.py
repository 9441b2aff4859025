"""Posterior calibration: widening a model's posterior draws to match held-out coverage.

A cINN trained on emulated spectra learns the noise it was shown; the mismatch between the
emulator and real synthesis (or real stars) is not in its posteriors, which are then too
narrow at high S/N. `PosteriorCalibration` widens each spectrum's draws of a parameter about
their median by

.. math::

    x' = m + (x - m) \\sqrt{s^2 + (f / w)^2},

where :math:`m` is the median of the draws, :math:`w = (q_{84} - q_{16}) / 2` their half
width, :math:`s` a scale factor and :math:`f` a systematic floor in the parameter's unit. The
median is unchanged and the half width becomes :math:`\\sqrt{(s w)^2 + f^2}`: a scale for
noise the network under-rates and a floor added in quadrature for model error. The shape of
the posterior (skewness, correlations between parameters) is kept.

Width-dependent scale. A network trained with more noise than its held-out stars show can be
too wide at high S/N and right at low S/N, which no single :math:`s` fits. Optionally the scale
of a parameter is a function of the half width itself, :math:`s(w)`, piecewise linear in
:math:`\\log w` between nodes :math:`(w_i, s_i)` and constant beyond them (``width_scale``): a
recalibration of the posterior's spread as a function of its own size, which needs nothing but
the draws (not the S/N of the input).

`fit_posterior_calibration` chooses :math:`s` and :math:`f` per parameter on a grid so that
the central-interval coverage of spectra with known labels matches the nominal levels at every
S/N; `specutils_cinn.calibration.heldout.calibrate_posteriors` (``specutils-cinn calibrate
posterior``) runs it on held-out Turbospectrum stars.

Model mismatch. Synthetic held-out stars share the training physics; real stars do not. An
optional third term per parameter, :math:`\\kappa`, widens each spectrum by how badly the
model's emulator fits it: with :math:`A` the spectrum's ``fit_mismatch`` (the residual RMS
that noise and emulator error do not explain, in continuum units; see
`~specutils_cinn.fit_check.FitStatistics`) and :math:`A_0` a tolerance (a level most held-out
synthetic stars stay below), the half width becomes
:math:`\\sqrt{(s w)^2 + f^2 + \\kappa^2 \\max(A^2 - A_0^2, 0) / c^{2\\gamma}}`, with
:math:`c` the spectrum's ``coverage`` (the fraction of the model's pixels it covers) and
:math:`\\gamma \\ge 0` an optional power per parameter (0 when not given). Spectra the
physics describes keep their calibrated widths. The coverage power is there because a spectrum
that lacks an arm shows less residual (the arm's misfit is missing from :math:`A`) while its
labels rest on fewer lines, so that the same :math:`A` moves them further: with
:math:`\\gamma = 0` the partial spectra alone set :math:`\\kappa` and every full spectrum
gets their width. The coverage is clipped to the range of the spectra the term was fitted on,
so that it is not extrapolated.
`specutils_cinn.calibration.mismatch.fit_mismatch_kappa` fits :math:`\\kappa` on observed solar
spectra (``scripts/calibrate_mismatch.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "CALIBRATION_LEVELS",
    "CROSS_FIT_RULE",
    "LEGACY_CROSS_FIT_RULE",
    "MISMATCH_MIN_COVERAGE",
    "PosteriorCalibration",
    "central_coverage",
    "cross_fit_fold",
    "fit_posterior_calibration",
]

#: Central-interval levels whose coverage `fit_posterior_calibration` matches by default.
CALIBRATION_LEVELS: tuple[float, ...] = (0.5, 0.68, 0.9, 0.95)
#: How `cross_fit_fold` splits stars into two folds (recorded with fitted calibrations): by
#: a hash of the star id, so that the folds do not follow the grid's design. The earlier rule
#: (`LEGACY_CROSS_FIT_RULE`) split the held-out stars of the v2 grid (every tenth star of a
#: Sobol design) into a warm and a cool half.
CROSS_FIT_RULE: str = "fold A: lowest bit of splitmix64(star_id) is 0; fold B: it is 1"
#: The rule of calibrations fitted before `CROSS_FIT_RULE` (still understood by
#: `cross_fit_fold`, so that their recorded folds are applied to the stars they were fitted
#: without).
LEGACY_CROSS_FIT_RULE: str = "fold A: star_id // 10 even; fold B: odd"
#: The lowest coverage `PosteriorCalibration.mismatch_widening` uses when the calibration
#: does not name the range its coverage power was fitted on (``mismatch_coverage_range``).
MISMATCH_MIN_COVERAGE: float = 0.05
#: Half widths below this fraction of the floor are treated as this (avoids 0 / 0).
_TINY = 1e-6


@dataclass(frozen=True)
class PosteriorCalibration:
    """Per-parameter widening of posterior draws about their median.

    Parameters
    ----------
    scale : dict
        Parameter name to scale factor :math:`s > 0` (1 leaves the noise width as it is).
    floor : dict
        Parameter name to systematic floor :math:`f \\ge 0`, in the parameter's unit (the
        unit of its standard deviation, e.g. dex for ``logg``). Parameters missing from both
        dictionaries are not changed.
    info : dict, optional
        Free-form JSON-serializable provenance (how and on what it was fitted).
    mismatch : dict, optional
        Parameter name to :math:`\\kappa \\ge 0` (parameter unit per continuum unit of
        ``fit_mismatch``), applied by `mismatch_widening` after the fit check.
    mismatch_tolerance : float, optional
        :math:`A_0 \\ge 0`, the ``fit_mismatch`` below which no spectrum is widened.
    mismatch_coverage_power : dict, optional
        Parameter name to :math:`\\gamma \\ge 0`: the mismatch term of a spectrum covering
        a fraction :math:`c` of the model's pixels is divided by :math:`c^\\gamma` (missing
        parameters: 0, the term does not depend on coverage).
    mismatch_coverage_range : tuple of float, optional
        ``(low, high)``, :math:`0 < low \\le high \\le 1`: the coverage is clipped to it
        before the power is applied, so that the term is not extrapolated beyond the coverage
        of the spectra it was fitted on (default: `MISMATCH_MIN_COVERAGE` to 1).
    width_scale : dict, optional
        Parameter name to nodes ``[(w_1, s_1), (w_2, s_2), ...]``: half widths :math:`w_i > 0`
        (parameter unit, increasing) and scales :math:`s_i > 0`. For such a parameter the scale
        is :math:`s(w)`, interpolated in :math:`\\log w` (constant beyond the end nodes), and
        its ``scale`` entry is not used.

    Raises
    ------
    ValueError
        If a scale is not a positive finite number or a floor not a non-negative one.

    Examples
    --------
    >>> import torch
    >>> from specutils_cinn.calibration import PosteriorCalibration
    >>> cal = PosteriorCalibration(scale={"logg": 1.0}, floor={"logg": 0.1})
    >>> draws = 4.0 + 0.05 * torch.randn(2, 4000, 1, generator=torch.Generator().manual_seed(0))
    >>> wide = cal.apply(draws, ["logg"])
    >>> round(float(wide[0, :, 0].std()), 2)  # sqrt(0.05**2 + 0.1**2)
    0.11
    """

    scale: dict[str, float] = field(default_factory=dict)
    floor: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    mismatch: dict[str, float] = field(default_factory=dict)
    mismatch_tolerance: float = 0.0
    width_scale: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    mismatch_coverage_power: dict[str, float] = field(default_factory=dict)
    mismatch_coverage_range: tuple[float, float] = (MISMATCH_MIN_COVERAGE, 1.0)

    def __post_init__(self) -> None:
        scale = _per_parameter("scale", self.scale, positive=True)
        floor = _per_parameter("floor", self.floor)
        if not isinstance(self.info, Mapping):
            raise ValueError(f"posterior_calibration.info must be an object, got {self.info!r}")
        object.__setattr__(self, "mismatch", _per_parameter("mismatch", self.mismatch))
        object.__setattr__(self, "mismatch_coverage_power",
                           _per_parameter("mismatch_coverage_power", self.mismatch_coverage_power))
        try:
            lo, hi = (float(v) for v in self.mismatch_coverage_range)
        except (TypeError, ValueError):
            lo, hi = math.nan, math.nan
        if not (0 < lo <= hi <= 1):
            raise ValueError(f"posterior_calibration.mismatch_coverage_range must be (low, high) "
                             f"with 0 < low <= high <= 1, got {self.mismatch_coverage_range!r}")
        object.__setattr__(self, "mismatch_coverage_range", (lo, hi))
        tol = float(self.mismatch_tolerance)
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"posterior_calibration.mismatch_tolerance must be a non-negative "
                             f"finite number, got {self.mismatch_tolerance!r}")
        object.__setattr__(self, "mismatch_tolerance", tol)
        nodes = {}
        for name, value in dict(self.width_scale).items():
            try:
                arr = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                arr = np.empty(0)
            if (arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1
                    or not np.all(np.isfinite(arr)) or np.any(arr <= 0)
                    or np.any(np.diff(arr[:, 0]) <= 0)):
                raise ValueError(f"posterior_calibration.width_scale[{name!r}] must be nodes "
                                 f"[[width, scale], ...] of positive finite numbers with "
                                 f"increasing widths, got {value!r}")
            nodes[str(name)] = tuple((float(w), float(k)) for w, k in arr)
        object.__setattr__(self, "width_scale", nodes)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "floor", floor)
        object.__setattr__(self, "info", dict(self.info))

    @property
    def parameters(self) -> list[str]:
        """Names of the parameters this calibration changes, sorted."""
        return sorted(set(self.scale) | set(self.floor) | set(self.mismatch)
                      | set(self.width_scale))

    def factors(self, parameters: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Scale and floor for each of ``parameters`` (1 and 0 where not calibrated).

        Parameters
        ----------
        parameters : sequence of str
            Parameter names in column order.

        Returns
        -------
        scale, floor : numpy.ndarray
            One value per parameter; for a parameter with ``width_scale`` the scale is NaN
            (it depends on each posterior's width: `widening`).
        """
        s = np.array([np.nan if p in self.width_scale else self.scale.get(p, 1.0)
                      for p in parameters], dtype=float)
        f = np.array([self.floor.get(p, 0.0) for p in parameters], dtype=float)
        return s, f

    def describe(self, parameter: str) -> str:
        """One parameter's calibration as text.

        Parameters
        ----------
        parameter : str
            The parameter name.

        Returns
        -------
        str
            ``"x<scale> (+) <floor>"``, or for a width-dependent scale
            ``"x<scale>@<width> ... (+) <floor>"``, one entry per node.
        """
        floor = self.floor.get(parameter, 0.0)
        if parameter in self.width_scale:
            nodes = " ".join(f"x{k:.3g}@{w:.3g}" for w, k in self.width_scale[parameter])
            return f"{nodes} (+) {floor:g}"
        return f"x{self.scale.get(parameter, 1.0):g} (+) {floor:g}"

    def apply(self, draws: torch.Tensor, parameters: Sequence[str]) -> torch.Tensor:
        """Widen draws ``[B, S, D]`` (physical units, columns ``parameters``) per spectrum.

        Parameters
        ----------
        draws : torch.Tensor
            Posterior draws, ``[spectra, draws, parameters]``.
        parameters : sequence of str
            Column names of the last axis.

        Returns
        -------
        torch.Tensor
            The widened draws (a new tensor unless nothing changes); medians are unchanged
            and columns without a calibration are returned exactly as given.
        """
        if draws.ndim != 3 or draws.shape[-1] != len(parameters):
            raise ValueError(f"draws must be [spectra, draws, {len(parameters)}], got "
                             f"{tuple(draws.shape)}")
        cols = self._columns(parameters)
        if cols.size == 0:
            return draws
        sub = draws[..., cols]
        q = torch.tensor([0.16, 0.5, 0.84], dtype=draws.dtype, device=draws.device)
        q16, med, q84 = torch.quantile(sub, q, dim=1, keepdim=True)
        k = self._widening(q16, q84, [parameters[c] for c in cols])
        out = draws.clone()
        out[..., cols] = med + (sub - med) * k
        return out

    def widening(
        self, q16: torch.Tensor, q84: torch.Tensor, parameters: Sequence[str]
    ) -> torch.Tensor:
        """The factor by which `apply` stretches draws about their median.

        An affine map with a positive factor commutes with quantiles, so the quantiles of the
        widened draws are ``median + (q - median) * factor`` of the raw ones, and their
        standard deviation is ``std * factor``: summaries can be widened without the draws.

        Parameters
        ----------
        q16, q84 : torch.Tensor
            16th and 84th percentiles of the raw draws, ``[..., D]``.
        parameters : sequence of str
            The D parameter names.

        Returns
        -------
        torch.Tensor
            ``[..., D]`` factors, 1 for parameters without a calibration.
        """
        return self._widening(q16, q84, parameters)

    def mismatch_widening(
        self, q16: torch.Tensor, q84: torch.Tensor, amplitude: torch.Tensor,
        parameters: Sequence[str], coverage: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Factor that widens calibrated draws for the model mismatch of each spectrum.

        Parameters
        ----------
        q16, q84 : torch.Tensor
            16th and 84th percentiles of the calibrated draws, ``[B, D]``.
        amplitude : torch.Tensor
            ``fit_mismatch`` of each spectrum, ``[B]`` (NaN counts as 0: no widening).
        parameters : sequence of str
            The D parameter names.
        coverage : torch.Tensor, optional
            ``[B]`` fraction of the model's pixels each spectrum covers (the output column
            ``coverage``), used with ``mismatch_coverage_power``; taken as 1 when not given or
            NaN, and clipped to ``mismatch_coverage_range``.

        Returns
        -------
        torch.Tensor
            ``[B, D]`` factors
            :math:`\\sqrt{1 + \\kappa^2 \\max(A^2 - A_0^2, 0) / (c^{2\\gamma} w^2)}`,
            1 where :math:`\\kappa = 0` or :math:`A \\le A_0`.
        """
        kappa = torch.as_tensor([self.mismatch.get(p, 0.0) for p in parameters],
                                dtype=q16.dtype, device=q16.device)
        a = torch.nan_to_num(amplitude.to(q16.dtype), nan=0.0).clamp_min(0.0)[:, None]
        excess2 = (a**2 - self.mismatch_tolerance**2).clamp_min(0.0)
        if coverage is not None and self.mismatch_coverage_power:
            gamma = torch.as_tensor(
                [self.mismatch_coverage_power.get(p, 0.0) for p in parameters],
                dtype=q16.dtype, device=q16.device)
            c = torch.nan_to_num(coverage.to(q16.dtype), nan=1.0)
            c = c.clamp(*self.mismatch_coverage_range)[:, None]
            excess2 = excess2 * c ** (-2.0 * gamma)
        half = torch.clamp(0.5 * (q84 - q16), min=torch.finfo(q16.dtype).tiny)
        k = torch.sqrt(1.0 + kappa**2 * excess2 / half**2)
        return torch.where(torch.isfinite(k), k, torch.ones_like(k))

    def _columns(self, parameters: Sequence[str]) -> np.ndarray:
        s, f = self.factors(parameters)
        return np.flatnonzero((s != 1.0) | (f != 0.0))  # NaN (width_scale) != 1.0

    def _widening(
        self, q16: torch.Tensor, q84: torch.Tensor, parameters: Sequence[str]
    ) -> torch.Tensor:
        s, f = self.factors(parameters)
        f_t = torch.as_tensor(f, dtype=q16.dtype, device=q16.device)
        half = torch.maximum(0.5 * (q84 - q16), _TINY * f_t + torch.finfo(q16.dtype).tiny)
        s_t = torch.as_tensor(np.nan_to_num(s, nan=1.0), dtype=q16.dtype,
                              device=q16.device).expand(half.shape).clone()
        for j, p in enumerate(parameters):
            if p in self.width_scale:
                s_t[..., j] = _interp_log(half[..., j], self.width_scale[p])
        return torch.sqrt(s_t**2 + (f_t / half) ** 2)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored as ``posterior_calibration`` in model metadata.

        Returns
        -------
        dict
            Keys ``scale``, ``floor`` and ``info``, and ``mismatch``, ``width_scale`` and
            ``mismatch_coverage_power`` (with ``mismatch_coverage_range``) when they are not
            empty.
        """
        out = {"scale": dict(self.scale), "floor": dict(self.floor), "info": dict(self.info)}
        if self.mismatch:
            out["mismatch"] = dict(self.mismatch)
            out["mismatch_tolerance"] = self.mismatch_tolerance
        if self.mismatch_coverage_power:
            out["mismatch_coverage_power"] = dict(self.mismatch_coverage_power)
            out["mismatch_coverage_range"] = list(self.mismatch_coverage_range)
        if self.width_scale:
            out["width_scale"] = {p: [list(n) for n in v] for p, v in self.width_scale.items()}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PosteriorCalibration:
        """Build a calibration from the output of `to_dict`.

        Parameters
        ----------
        d : dict
            With keys ``scale`` and ``floor`` (objects) and optionally ``info`` and
            ``mismatch``, ``mismatch_tolerance``, ``width_scale``,
            ``mismatch_coverage_power`` and ``mismatch_coverage_range``.

        Returns
        -------
        PosteriorCalibration

        Raises
        ------
        ValueError
            If a key is missing or unknown or a value invalid.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"posterior_calibration must be an object, got {d!r}")
        unknown = sorted(set(d) - {"scale", "floor", "info", "mismatch", "mismatch_tolerance",
                                   "width_scale", "mismatch_coverage_power",
                                   "mismatch_coverage_range"})
        if unknown:
            raise ValueError(f"posterior_calibration.{unknown[0]}: unknown key")
        for key in ("scale", "floor"):
            if not isinstance(d.get(key), Mapping):
                raise ValueError(f"posterior_calibration.{key} must be an object, got "
                                 f"{d.get(key)!r}")
        if not isinstance(d.get("mismatch", {}), Mapping):
            raise ValueError(f"posterior_calibration.mismatch must be an object, got "
                             f"{d.get('mismatch')!r}")
        for key in ("width_scale", "mismatch_coverage_power"):
            if not isinstance(d.get(key, {}), Mapping):
                raise ValueError(f"posterior_calibration.{key} must be an object, got "
                                 f"{d.get(key)!r}")
        return cls(dict(d["scale"]), dict(d["floor"]), dict(d.get("info", {})),
                   dict(d.get("mismatch", {})), d.get("mismatch_tolerance", 0.0),
                   dict(d.get("width_scale", {})), dict(d.get("mismatch_coverage_power", {})),
                   tuple(d.get("mismatch_coverage_range", (MISMATCH_MIN_COVERAGE, 1.0))))


def _per_parameter(field: str, values: Mapping[str, Any], positive: bool = False
                   ) -> dict[str, float]:
    """``values`` as ``{str: float}``, each finite and non-negative (positive if asked)."""
    out = {}
    for name, value in dict(values).items():
        v = float(value)
        if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
            kind = "positive" if positive else "non-negative"
            raise ValueError(f"posterior_calibration.{field}[{name!r}] must be a {kind} finite "
                             f"number, got {value!r}")
        out[str(name)] = v
    return out


def _interp_log(half: torch.Tensor, nodes: Sequence[tuple[float, float]]) -> torch.Tensor:
    """Scale at half widths ``half``: piecewise linear in log width through ``nodes``."""
    w = torch.as_tensor([n[0] for n in nodes], dtype=half.dtype, device=half.device)
    k = torch.as_tensor([n[1] for n in nodes], dtype=half.dtype, device=half.device)
    if w.numel() == 1:
        return k[0].expand(half.shape)
    x, xw = torch.log(half), torch.log(w)
    i = torch.searchsorted(xw, x.contiguous().clamp(xw[0], xw[-1])).clamp(1, w.numel() - 1)
    t = ((x - xw[i - 1]) / (xw[i] - xw[i - 1])).clamp(0.0, 1.0)
    return k[i - 1] + t * (k[i] - k[i - 1])


def central_coverage(pit: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Fraction of rows whose truth lies inside each central posterior interval.

    Parameters
    ----------
    pit : numpy.ndarray
        Probability integral transforms (fraction of draws below the truth), any shape ``[...,
        N]``.
    levels : sequence of float
        Central-interval levels, e.g. ``(0.68, 0.95)``.

    Returns
    -------
    numpy.ndarray
        ``[..., len(levels)]`` coverage fractions.
    """
    lv = np.asarray(levels, dtype=float)
    inside = np.abs(np.asarray(pit)[..., None] - 0.5) < lv / 2
    return inside.mean(axis=-2)


def cross_fit_fold(star_id: np.ndarray, rule: str = CROSS_FIT_RULE) -> np.ndarray:
    """Fold of each star for two-fold cross-fitting.

    Parameters
    ----------
    star_id : numpy.ndarray
        Integer star identifiers (non-negative).
    rule : str, optional
        `CROSS_FIT_RULE` (default: the lowest bit of the splitmix64 hash of the id, which
        does not follow any regular pattern of the ids) or `LEGACY_CROSS_FIT_RULE` (the
        tens digit's parity, the rule a calibration recorded before), e.g. the ``rule`` a
        calibration recorded in ``info["cross_validation"]``.

    Returns
    -------
    numpy.ndarray
        True for stars in fold A, False for fold B.

    Raises
    ------
    ValueError
        If ``rule`` is not one of the two.
    """
    ids = np.asarray(star_id).astype(np.int64)
    if rule == LEGACY_CROSS_FIT_RULE:
        return (ids // 10) % 2 == 0
    if rule != CROSS_FIT_RULE:
        raise ValueError(f"unknown cross-fitting rule {rule!r}; known: {CROSS_FIT_RULE!r} and "
                         f"{LEGACY_CROSS_FIT_RULE!r}")
    if np.any(ids < 0):
        raise ValueError("star ids must be non-negative")
    z = ids.astype(np.uint64)
    with np.errstate(over="ignore"):  # splitmix64 (Steele et al. 2014): wrapping uint64 math
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z & np.uint64(1)) == 0


def _pit_widened(sorted_draws: np.ndarray, truth: np.ndarray, k: np.ndarray) -> np.ndarray:
    """PIT of ``truth`` [N] in draws [N, S] widened about their median by ``k`` [C, N]."""
    n, s = sorted_draws.shape
    med = np.median(sorted_draws, axis=1)
    target = med + (truth - med) / k  # [C, N]: x' < t  <=>  x < m + (t - m) / k
    out = np.empty(k.shape)
    for i in range(n):
        out[:, i] = np.searchsorted(sorted_draws[i], target[:, i]) / s
    return out


def fit_posterior_calibration(
    draws: np.ndarray,
    truth: np.ndarray,
    parameters: Sequence[str],
    groups: np.ndarray | None = None,
    *,
    levels: Sequence[float] = CALIBRATION_LEVELS,
    scales: Sequence[float] | None = None,
    floors: Mapping[str, Sequence[float]] | None = None,
    info: Mapping[str, Any] | None = None,
    by_width: bool = False,
) -> PosteriorCalibration:
    """Scale and floor per parameter that make central-interval coverage nominal.

    For each parameter independently, every (scale, floor) pair of the grid widens the draws
    as `PosteriorCalibration.apply` would; the pair kept minimizes the sum over ``groups``
    (e.g. S/N values, each weighted equally) and ``levels`` of the squared difference between
    coverage and level. Ties go to the narrowest posterior.

    Parameters
    ----------
    draws : numpy.ndarray
        ``[N, S, D]`` uncalibrated posterior draws of N spectra.
    truth : numpy.ndarray
        ``[N, D]`` true values.
    parameters : sequence of str
        The D parameter names.
    groups : numpy.ndarray, optional
        ``[N]`` group label of each spectrum (default: one group).
    levels : sequence of float, optional
        Central-interval levels to match.
    scales : sequence of float, optional
        Candidate scales; default 1 to 3 in steps of 0.05 (the calibration only widens).
    floors : dict, optional
        Candidate floors per parameter; default 0 to the standard deviation of the truth
        in 100 steps.
    info : dict, optional
        Stored as the calibration's ``info`` (the fit adds ``loss_before``/``loss_after``).
    by_width : bool, optional
        Fit a width-dependent scale instead (``width_scale``, no floor): for each group on
        its own the scale of the grid that brings its coverage closest to nominal, placed at
        the group's median half width. Needs at least two groups (e.g. S/N values), which then
        should differ in posterior width.

    Returns
    -------
    PosteriorCalibration
        With every parameter in ``scale`` and ``floor``.
    """
    draws = np.asarray(draws, dtype=float)
    truth = np.asarray(truth, dtype=float)
    if draws.ndim != 3 or truth.shape != (draws.shape[0], draws.shape[2]):
        raise ValueError(f"draws [N, S, D] and truth [N, D] do not match: {draws.shape}, "
                         f"{truth.shape}")
    if len(parameters) != draws.shape[2]:
        raise ValueError(f"{len(parameters)} parameter names for {draws.shape[2]} columns")
    groups = np.zeros(draws.shape[0], int) if groups is None else np.asarray(groups)
    ok = np.isfinite(draws).all(axis=(1, 2)) & np.isfinite(truth).all(axis=1)
    draws, truth, groups = draws[ok], truth[ok], groups[ok]
    if draws.shape[0] < 2:
        raise ValueError("need at least 2 spectra with finite draws and truth")
    s_grid = np.round(np.arange(1.0, 3.0001, 0.05) if scales is None else np.asarray(scales, float),
                      6)
    lv = np.asarray(levels, dtype=float)
    labels = np.unique(groups)
    if by_width and labels.size < 2:
        raise ValueError("by_width needs at least two groups (e.g. S/N values)")
    scale, floor, before, after = {}, {}, {}, {}
    width_scale: dict[str, list[tuple[float, float]]] = {}
    for j, p in enumerate(parameters):
        x = np.sort(draws[:, :, j], axis=1)
        t = truth[:, j]
        sd = float(np.std(t)) or 1.0
        f_grid = (np.linspace(0.0, sd, 101) if floors is None or p not in floors
                  else np.asarray(floors[p], float))
        half = 0.5 * (np.quantile(x, 0.84, axis=1) - np.quantile(x, 0.16, axis=1))
        ss, ff = np.meshgrid(s_grid, f_grid, indexing="ij")
        ss, ff = ss.ravel(), ff.ravel()
        half = np.maximum(half, _TINY * max(float(ff.max()), 1e-300) + 1e-300)
        k1 = np.ones((1, t.size))
        before[p] = float(sum(np.sum((central_coverage(_pit_widened(x, t, k1)[:, groups == g],
                                                        lv) - lv) ** 2) for g in labels)
                          / labels.size)
        if by_width:
            width_scale[p], after[p] = _fit_by_width(x, t, half, groups, labels, s_grid, lv)
            floor[p] = 0.0
            continue
        k = np.sqrt(ss[:, None] ** 2 + (ff[:, None] / half[None, :]) ** 2)  # [C, N]
        pit = _pit_widened(x, t, k)
        loss = np.zeros(ss.size)
        for g in labels:
            cov = central_coverage(pit[:, groups == g], lv)  # [C, L]
            loss += np.sum((cov - lv) ** 2, axis=1) / labels.size
        # Ties (coverage is a step function): the narrowest posterior, i.e. the smallest
        # median widening factor.
        best = np.flatnonzero(loss <= loss.min() + 1e-12)
        pick = best[np.argmin(np.median(k[best], axis=1))]
        scale[p], floor[p] = float(ss[pick]), float(ff[pick])
        after[p] = float(loss[pick])
    meta = dict(info or {})
    meta.update({"levels": [float(v) for v in lv], "loss_before": before, "loss_after": after})
    return PosteriorCalibration(scale, floor, meta, width_scale=width_scale)


def _fit_by_width(x: np.ndarray, t: np.ndarray, half: np.ndarray, groups: np.ndarray,
                  labels: np.ndarray, s_grid: np.ndarray, lv: np.ndarray
                  ) -> tuple[list[tuple[float, float]], float]:
    """Nodes (median half width of a group, its best scale) and the loss of s(w) on all."""
    nodes = []
    for g in labels:
        rows = groups == g
        pit = _pit_widened(x[rows], t[rows], np.repeat(s_grid[:, None], rows.sum(), axis=1))
        loss = np.sum((central_coverage(pit, lv) - lv) ** 2, axis=1)
        best = np.flatnonzero(loss <= loss.min() + 1e-12)
        nodes.append((float(np.median(half[rows])), float(s_grid[best].min())))
    nodes.sort()
    merged: list[tuple[float, float]] = []
    for w, k in nodes:  # equal widths (a degenerate case): one node with the mean scale
        if merged and w <= merged[-1][0]:
            merged[-1] = (merged[-1][0], 0.5 * (merged[-1][1] + k))
        else:
            merged.append((w, k))
    k_rows = _interp_log(torch.as_tensor(half), merged).numpy()[None, :]
    pit = _pit_widened(x, t, k_rows)
    loss = sum(np.sum((central_coverage(pit[:, groups == g], lv) - lv) ** 2)
               for g in labels) / labels.size
    return merged, float(loss)
