r"""The prior of the stellar labels of simulated training spectra (`LabelPrior`).

(Teff, log g) are uniform over a Kiel-diagram region, the other labels uniform over their
ranges (Li as [Li/Fe] from a uniform A(Li)), v sin i uniform and, optionally, radial-tangential
macroturbulence uniform. `~specutils_cinn.training.EmulatorSimulator` draws its labels from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..parameters import SOLAR_A_LI, li_fe_from_a_li
from ..synthesis.design import KielRegion

if TYPE_CHECKING:
    from ..emulator import SpectrumEmulator

__all__ = ["LabelPrior"]


def _interp(x: torch.Tensor, knots: Sequence[tuple[float, float]]) -> torch.Tensor:
    """Piecewise-linear interpolation through ``knots``, constant beyond the end knots."""
    k = np.asarray(knots, dtype=np.float64)
    xk = torch.as_tensor(np.ascontiguousarray(k[:, 0]), device=x.device)
    yk = torch.as_tensor(np.ascontiguousarray(k[:, 1]), device=x.device)
    xc = x.clamp(float(xk[0]), float(xk[-1]))
    i = torch.searchsorted(xk, xc, right=True).clamp(1, xk.numel() - 1) - 1
    t = (xc - xk[i]) / (xk[i + 1] - xk[i])
    return yk[i] + t * (yk[i + 1] - yk[i])


@dataclass(frozen=True)
class LabelPrior:
    r"""Prior of the stellar labels of simulated spectra.

    (:math:`T_\mathrm{eff}`, :math:`\log g`) are uniform over the part of ``region`` inside
    ``logg_range`` (rejection sampling, so uniform in area, unlike the Sobol designs of
    `~specutils_cinn.synthesis.design.LabelDesign`, which are uniform in :math:`\log g` at each
    :math:`T_\mathrm{eff}`); every label in ``ranges`` is uniform and independent; ``li_fe``
    is derived from A(Li) as ``a_li - 1.05 - fe_h``
    (`~specutils_cinn.parameters.li_fe_from_a_li`); :math:`v\sin i` is uniform in
    ``vsini_range``; the radial-tangential macroturbulence :math:`\zeta` (``vmacro``) is uniform
    in ``vmacro_range`` when that is given, and not drawn otherwise.

    Parameters
    ----------
    region : `~specutils_cinn.synthesis.design.KielRegion`
        Where (Teff, log g) may lie.
    ranges : mapping of str to (float, float)
        Uniform ranges of the other labels (``a_li`` absolute).
    logg_range : (float, float), optional
        Extra limits on log g (e.g. an emulator's training range).
    vsini_range : (float, float)
        Range of the uniform :math:`v\sin i` distribution in km/s. The default 0-25 km/s is the
        range of the seed training sets: most FGK stars rotate slowly, and a wider range costs
        precision on the slow rotators.
    vmacro_range : (float, float), optional
        Range of the uniform macroturbulence distribution in km/s (non-negative), e.g.
        ``(2.0, 7.0)`` for FGK dwarfs and giants (the Sun: about 3.5-4 km/s). Default: no
        macroturbulence; ``vmacro`` is then not a label of the prior.
    """

    region: KielRegion = field(default_factory=KielRegion)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    logg_range: tuple[float, float] | None = None
    vsini_range: tuple[float, float] = (0.0, 25.0)
    vmacro_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        vm = self.vmacro_range
        if vm is not None:
            try:
                vm = tuple(float(v) for v in vm)
            except (TypeError, ValueError):
                vm = ()
            if len(vm) != 2 or not (math.isfinite(vm[0]) and math.isfinite(vm[1])) or vm[0] < 0:
                raise ValueError(f"vmacro_range must be two finite non-negative numbers (km/s), "
                                 f"got {self.vmacro_range!r}")
            object.__setattr__(self, "vmacro_range", vm)
        extra = {} if vm is None else {"vmacro": vm}
        for name, (lo, hi) in {**self.ranges, "vsini": self.vsini_range, **extra}.items():
            if not hi >= lo:
                raise ValueError(f"prior range of {name!r} must be increasing, got {(lo, hi)}")
        if self.vsini_range[0] < 0:
            raise ValueError(f"vsini_range must be non-negative, got {self.vsini_range}")
        if "vmacro" in self.ranges:
            raise ValueError("vmacro takes vmacro_range, not ranges")
        if "teff" in self.ranges or "logg" in self.ranges:
            raise ValueError("teff and logg come from the Kiel region, not from ranges")
        if self.logg_range is not None:
            t = np.linspace(*self.region.teff_range, 301)
            lo = np.maximum(self.region.logg_lower(t), self.logg_range[0])
            hi = np.minimum(self.region.logg_upper(t), self.logg_range[1])
            if not np.any(hi > lo):
                raise ValueError("logg_range does not overlap the Kiel region")

    @classmethod
    def from_emulator(
        cls,
        emulator: SpectrumEmulator,
        region: KielRegion | None = None,
        vsini_range: tuple[float, float] = (0.0, 25.0),
        ranges: Mapping[str, tuple[float, float]] | None = None,
        vmacro_range: tuple[float, float] | None = None,
    ) -> LabelPrior:
        """The prior over an emulator's training ranges, inside a Kiel region.

        Parameters
        ----------
        emulator : `~specutils_cinn.emulator.SpectrumEmulator`
            Its label ranges bound every label (the region's Teff range is cut to them).
        region : `~specutils_cinn.synthesis.design.KielRegion`, optional
            Default `~specutils_cinn.synthesis.design.KielRegion()`.
        vsini_range : (float, float)
            Uniform :math:`v\\sin i` range in km/s.
        ranges : mapping, optional
            Narrower ranges for some labels (default: the emulator's training ranges).
        vmacro_range : (float, float), optional
            Uniform macroturbulence range in km/s (default: none).

        Returns
        -------
        LabelPrior
        """
        region = region or KielRegion()
        emu = dict(zip(emulator.label_names, map(tuple, emulator.label_ranges), strict=True))
        t_lo, t_hi = emu.get("teff", region.teff_range)
        teff = (max(region.teff_range[0], t_lo), min(region.teff_range[1], t_hi))
        region = KielRegion(teff, region.lower, region.upper)
        other = {k: (float(v[0]), float(v[1])) for k, v in emu.items() if k not in ("teff", "logg")}
        other.update({k: (float(v[0]), float(v[1])) for k, v in (ranges or {}).items()})
        logg = emu.get("logg")
        return cls(region, other, None if logg is None else (float(logg[0]), float(logg[1])),
                   (float(vsini_range[0]), float(vsini_range[1])), vmacro_range)

    @property
    def label_names(self) -> list[str]:
        """Names of the drawn labels (``vmacro`` with `vmacro_range`, ``li_fe`` with ``a_li``)."""
        names = ["teff", "logg", *self.ranges, "vsini"]
        names += [] if self.vmacro_range is None else ["vmacro"]
        return names + (["li_fe"] if "a_li" in self.ranges else [])

    def parameter_ranges(self) -> dict[str, tuple[float, float]]:
        """Range of every label under the prior (log g: over the region and ``logg_range``)."""
        t = np.linspace(*self.region.teff_range, 1001)
        g_lo, g_hi = float(self.region.logg_lower(t).min()), float(self.region.logg_upper(t).max())
        if self.logg_range is not None:
            g_lo, g_hi = max(g_lo, self.logg_range[0]), min(g_hi, self.logg_range[1])
        out = {"teff": tuple(map(float, self.region.teff_range)), "logg": (g_lo, g_hi)}
        out.update({k: (float(a), float(b)) for k, (a, b) in self.ranges.items()})
        out["vsini"] = tuple(map(float, self.vsini_range))
        if self.vmacro_range is not None:
            out["vmacro"] = tuple(map(float, self.vmacro_range))
        if "a_li" in self.ranges:
            (a_lo, a_hi), (f_lo, f_hi) = self.ranges["a_li"], self.ranges["fe_h"]
            out["li_fe"] = (float(li_fe_from_a_li(a_lo, f_hi)), float(li_fe_from_a_li(a_hi, f_lo)))
        return out

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Draw ``n`` label sets.

        Parameters
        ----------
        n : int
            Number of draws.
        generator : `torch.Generator`
            Source of randomness; the labels are float64 tensors on its device.

        Returns
        -------
        dict of str to `torch.Tensor`
            One ``[n]`` tensor per name of `label_names`.
        """
        dev = generator.device
        kw = {"generator": generator, "device": dev, "dtype": torch.float64}
        t_lo, t_hi = self.region.teff_range
        t = torch.linspace(t_lo, t_hi, 301, dtype=torch.float64)
        g_lo = float(_interp(t, self.region.lower).min())
        g_hi = float(_interp(t, self.region.upper).max())
        if self.logg_range is not None:
            g_lo, g_hi = max(g_lo, self.logg_range[0]), min(g_hi, self.logg_range[1])
        teff, logg, have = [], [], 0
        while have < n:
            m = max(64, 2 * (n - have))
            tt = t_lo + (t_hi - t_lo) * torch.rand(m, **kw)
            gg = g_lo + (g_hi - g_lo) * torch.rand(m, **kw)
            ok = (gg >= _interp(tt, self.region.lower)) & (gg <= _interp(tt, self.region.upper))
            teff.append(tt[ok])
            logg.append(gg[ok])
            have += int(ok.sum())
        out = {"teff": torch.cat(teff)[:n], "logg": torch.cat(logg)[:n]}
        for name, (a, b) in self.ranges.items():
            out[name] = a + (b - a) * torch.rand(n, **kw)
        a, b = self.vsini_range
        out["vsini"] = a + (b - a) * torch.rand(n, **kw)
        if self.vmacro_range is not None:
            a, b = self.vmacro_range
            out["vmacro"] = a + (b - a) * torch.rand(n, **kw)
        if "a_li" in self.ranges:
            out["li_fe"] = li_fe_from_a_li(out["a_li"], out["fe_h"])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable description (for the model's provenance)."""
        out = {
            "teff_logg": "uniform in area over the Kiel region (rejection sampling)",
            "teff_range": list(self.region.teff_range),
            "logg_lower": [list(k) for k in self.region.lower],
            "logg_upper": [list(k) for k in self.region.upper],
            "logg_range": None if self.logg_range is None else list(self.logg_range),
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "vsini": {"distribution": "uniform", "range": list(self.vsini_range)},
            "derived": {"li_fe": f"a_li - {SOLAR_A_LI} - fe_h"} if "a_li" in self.ranges else {},
        }
        if self.vmacro_range is not None:
            out["vmacro"] = {"distribution": "uniform", "range": list(self.vmacro_range),
                             "profile": "radial-tangential"}
        return out
