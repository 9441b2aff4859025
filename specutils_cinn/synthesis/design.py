r"""Label designs for synthesis grids: scrambled Sobol sequences over a Kiel-diagram region.

The default design covers FGK dwarfs, subgiants and giants:

- :math:`T_\mathrm{eff}` uniform in 4000-7000 K;
- :math:`\log g` uniform between a lower and an upper envelope that depend on
  :math:`T_\mathrm{eff}` (piecewise linear, `KielRegion`): from 1.0-5.0 at 4000 K (red giants up
  to the tip region, and K dwarfs) to 3.5-4.6 at 7000 K (turn-off and main sequence);
- [Fe/H] uniform in -2.5..+0.5 (also the atmosphere's [M/H]); microturbulence 0.5-2.5 km/s;
- [Mg/Fe], [Ca/Fe], [Ti/Fe], [Mn/Fe], [Ni/Fe] and A(Li) uniform and independent of each other and
  of [Fe/H] (no built-in [alpha/Fe] trend, so that a network trained on the grid cannot learn an
  abundance from [Fe/H] alone; a trend can be added with ``alpha_trend``).

Each star takes one point of a scrambled Sobol sequence (`scipy.stats.qmc.Sobol`) in the unit
hypercube; :math:`\log g` is mapped between the envelopes at the star's :math:`T_\mathrm{eff}`,
so the design stays low-discrepancy inside the region. The sequence is deterministic for a given
seed, and star ``i`` is always the ``i``-th point: a grid can be extended by asking for more stars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..parameters import SOLAR_A_LI, li_fe_from_a_li

__all__ = ["DEFAULT_RANGES", "KielRegion", "LabelDesign", "SOLAR_A_LI"]

#: Default uniform ranges of the labels other than Teff and log g.
DEFAULT_RANGES: Mapping[str, tuple[float, float]] = {
    "fe_h": (-2.5, 0.5),
    "vmic": (0.5, 2.5),
    "mg_fe": (-0.3, 0.7),
    "ca_fe": (-0.3, 0.6),
    "ti_fe": (-0.3, 0.6),
    "mn_fe": (-0.5, 0.3),
    "ni_fe": (-0.3, 0.3),
    "a_li": (-0.5, 3.5),
}


@dataclass(frozen=True)
class KielRegion:
    r"""A region of the Kiel diagram bounded by two piecewise-linear envelopes in log g.

    Parameters
    ----------
    teff_range : (float, float)
        Effective-temperature range in K.
    lower, upper : sequence of (teff, logg)
        Knots of the lower and upper log g envelopes (increasing Teff; linear in between,
        constant beyond the end knots).
    """

    teff_range: tuple[float, float] = (4000.0, 7000.0)
    lower: tuple[tuple[float, float], ...] = (
        (4000.0, 1.0), (4600.0, 1.0), (5600.0, 2.5), (6500.0, 3.5), (7000.0, 3.5))
    upper: tuple[tuple[float, float], ...] = ((4000.0, 5.0), (5500.0, 4.8), (7000.0, 4.6))

    def __post_init__(self) -> None:
        lo, hi = self.teff_range
        if not hi > lo:
            raise ValueError(f"teff_range must be increasing, got {self.teff_range}")
        t = np.linspace(lo, hi, 301)
        if np.any(self.logg_upper(t) <= self.logg_lower(t)):
            raise ValueError("the upper log g envelope must lie above the lower one everywhere")

    @staticmethod
    def _interp(knots: Sequence[tuple[float, float]], teff: np.ndarray) -> np.ndarray:
        k = np.asarray(knots, dtype=np.float64)
        if k.ndim != 2 or k.shape[1] != 2 or np.any(np.diff(k[:, 0]) <= 0):
            raise ValueError(f"envelope knots must be increasing (teff, logg) pairs, got {knots}")
        return np.interp(teff, k[:, 0], k[:, 1])

    def logg_lower(self, teff: np.ndarray) -> np.ndarray:
        """Lower log g envelope at ``teff`` (K)."""
        return self._interp(self.lower, np.asarray(teff, dtype=np.float64))

    def logg_upper(self, teff: np.ndarray) -> np.ndarray:
        """Upper log g envelope at ``teff`` (K)."""
        return self._interp(self.upper, np.asarray(teff, dtype=np.float64))

    def contains(self, teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
        """Whether each (teff, logg) lies inside the region."""
        teff = np.asarray(teff, dtype=np.float64)
        logg = np.asarray(logg, dtype=np.float64)
        lo, hi = self.teff_range
        return ((teff >= lo) & (teff <= hi) & (logg >= self.logg_lower(teff))
                & (logg <= self.logg_upper(teff)))


@dataclass(frozen=True)
class LabelDesign:
    """A deterministic design of stellar labels for a synthesis grid.

    Parameters
    ----------
    region : `KielRegion`
        Where (Teff, log g) may lie.
    ranges : mapping of str to (float, float)
        Uniform ranges of the other labels (default `DEFAULT_RANGES`). ``a_li`` is absolute
        A(Li); every other ``<x>_fe`` is [X/Fe].
    seed : int
        Seed of the Sobol scrambling.
    alpha_trend : bool
        If true, add the Galactic [alpha/Fe] trend (+0.4 below [Fe/H] = -1, falling linearly to
        0 at [Fe/H] = 0) to [Mg/Fe], [Ca/Fe] and [Ti/Fe], on top of their uniform draws
        (clipped to the ranges).
    """

    region: KielRegion = field(default_factory=KielRegion)
    ranges: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_RANGES))
    seed: int = 1
    alpha_trend: bool = False

    def __post_init__(self) -> None:
        for name, (lo, hi) in self.ranges.items():
            if not hi > lo:
                raise ValueError(f"range of {name!r} must be increasing, got {(lo, hi)}")
        if "fe_h" not in self.ranges:
            raise ValueError("a label design needs a range for 'fe_h'")

    @property
    def label_names(self) -> list[str]:
        """Names of the drawn labels, plus the derived ``li_fe`` when ``a_li`` is drawn."""
        names = ["teff", "logg", *self.ranges]
        if "a_li" in self.ranges:
            names.append("li_fe")
        return names

    def draw(self, n: int, start: int = 0) -> dict[str, np.ndarray]:
        """Labels of the ``n`` stars of the design that start at index ``start``.

        Parameters
        ----------
        n : int
            Number of stars.
        start : int
            Index of the first star (the design is one fixed sequence).

        Returns
        -------
        dict of str to `numpy.ndarray`
            One ``[n]`` array per label (see `label_names`), plus ``star_id``.
        """
        from scipy.stats import qmc

        if n < 0 or start < 0:
            raise ValueError(f"n and start must be non-negative, got n={n}, start={start}")
        dim = 2 + len(self.ranges)
        sampler = qmc.Sobol(d=dim, scramble=True, seed=self.seed)
        total = start + n
        m = max(int(np.ceil(np.log2(max(total, 1)))), 0)
        u = sampler.random_base2(m)[start:total] if total else np.zeros((0, dim))
        lo, hi = self.region.teff_range
        teff = lo + (hi - lo) * u[:, 0]
        glo, ghi = self.region.logg_lower(teff), self.region.logg_upper(teff)
        out = {"star_id": np.arange(start, total, dtype=np.int64), "teff": teff,
               "logg": glo + (ghi - glo) * u[:, 1]}
        for j, (name, (a, b)) in enumerate(self.ranges.items()):
            out[name] = a + (b - a) * u[:, 2 + j]
        if self.alpha_trend:
            trend = np.clip(-0.4 * out["fe_h"], 0.0, 0.4)
            for name in ("mg_fe", "ca_fe", "ti_fe"):
                if name in out:
                    a, b = self.ranges[name]
                    out[name] = np.clip(out[name] + trend, a, b)
        if "a_li" in out:
            out["li_fe"] = li_fe_from_a_li(out["a_li"], out["fe_h"])
        return out

    def to_dict(self) -> dict:
        """JSON-serializable description (for grid provenance)."""
        return {
            "kind": "scrambled Sobol (scipy.stats.qmc)",
            "seed": self.seed,
            "teff_range": list(self.region.teff_range),
            "logg_lower": [list(k) for k in self.region.lower],
            "logg_upper": [list(k) for k in self.region.upper],
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "alpha_trend": self.alpha_trend,
        }
