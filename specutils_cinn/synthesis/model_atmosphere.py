"""One model atmosphere (:class:`Atmosphere`) and the bracketing of grid nodes.

The ground floor of the atmosphere code: the MARCS grid (:mod:`.atmospheres`) and the ATLAS9
grid (:mod:`.atlas9`) both describe their models with :class:`Atmosphere` and choose the nodes
around a star with :func:`axis_pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["MAX_WIDEN", "NODE_TOLERANCE", "Atmosphere", "axis_pairs"]

#: Two grid values closer than this are the same node.
NODE_TOLERANCE = 1e-6
#: How many nodes a bracket may be widened by on each side around a hole.
MAX_WIDEN = 3


@dataclass(frozen=True)
class Atmosphere:
    """A model atmosphere ready for Turbospectrum.

    Attributes
    ----------
    path : pathlib.Path
        Model file.
    marcs_file_format : bool
        Value of Turbospectrum's ``MARCS-FILE`` key: True for MARCS web format (a grid node
        used directly), False for the generic format ``interpol_modeles`` writes.
    spherical : bool
        Spherical geometry (drives ``SPHERICAL`` in bsyn).
    teff, logg, m_h : float
        Parameters the model was made for.
    interpolated : bool
        Made by interpolation (False only when a grid node file is used as is).
    filled : bool
        A ``.filled`` grid node (a hole filled with another model) was used.
    extrapolated : bool
        The target lies outside the cube of nodes used on some axis.
    nodes : tuple of str
        Grid node names used (8 for a cube; 16 for the log g 3.0-3.5 blend; the distinct
        nodes with non-zero weight for ATLAS9).
    source : str
        ``"marcs-x3"``, ``"marcs-x3-interpolated"``, ``"marcs-sph3.0-pp3.5-blend"``, or for
        Castelli-Kurucz ATLAS9 models ``"atlas9-odfnew-a0.4"`` (``-a0.0`` for [alpha/M] = 0;
        see :mod:`~specutils_cinn.synthesis.atlas9`).
    widened : tuple of str
        Axes on which the bracket was widened around a hole.
    alpha_m : float
        [alpha/M] of the model (0 for MARCS x3, 0.4 for the ATLAS9 models used below
        [Fe/H] = -2.5). :func:`~specutils_cinn.synthesis.turbospectrum.synthesize` passes it
        as ``ALPHA/Fe``.
    """

    path: Path
    marcs_file_format: bool
    spherical: bool
    teff: float
    logg: float
    m_h: float
    interpolated: bool
    filled: bool
    extrapolated: bool
    nodes: tuple[str, ...] = ()
    source: str = "marcs-x3-interpolated"
    widened: tuple[str, ...] = field(default_factory=tuple)
    alpha_m: float = 0.0

    @property
    def family(self) -> str:
        """Model family: ``"atlas9"`` or ``"marcs"`` (from :attr:`source`)."""
        return "atlas9" if self.source.startswith("atlas9") else "marcs"

    def as_dict(self) -> dict:
        """Return the provenance as a JSON-friendly dict."""
        return {"path": str(self.path), "marcs_file_format": self.marcs_file_format,
                "spherical": self.spherical, "teff": self.teff, "logg": self.logg,
                "m_h": self.m_h, "interpolated": self.interpolated, "filled": self.filled,
                "extrapolated": self.extrapolated, "nodes": list(self.nodes),
                "source": self.source, "widened": list(self.widened),
                "family": self.family, "alpha_m": self.alpha_m}


def axis_pairs(values: np.ndarray, x: float,
               max_widen: int = MAX_WIDEN) -> list[tuple[float, float, int]]:
    """Candidate (lo, hi, cost) bracket pairs of ``x`` on one grid axis, tightest first.

    Parameters
    ----------
    values : numpy.ndarray
        Sorted unique node values of the axis.
    x : float
        Target value.
    max_widen : int
        How many nodes a bracket may be widened by on each side.

    Returns
    -------
    list of (float, float, int)
        ``(lo, hi, cost)``; ``lo == hi`` (cost 0) when ``x`` is a node value. Outside the axis
        the two edge nodes come first (the caller extrapolates).
    """
    exact = np.flatnonzero(np.abs(values - x) < NODE_TOLERANCE)
    out: list[tuple[float, float, int]] = []
    if exact.size:
        i = int(exact[0])
        out.append((values[i], values[i], 0))
        for w in range(1, max_widen + 1):
            for a, b in ((i - w, i), (i, i + w), (i - w, i + w)):
                if 0 <= a and b < len(values):
                    out.append((values[a], values[b], (b - a)))
    else:
        hi = int(np.searchsorted(values, x))
        if hi == 0:
            hi = 1
        if hi == len(values):
            hi = len(values) - 1
        lo = hi - 1
        for da in range(max_widen + 1):
            for db in range(max_widen + 1):
                a, b = lo - da, hi + db
                if 0 <= a and b < len(values):
                    out.append((values[a], values[b], 1 + da + db))
    return sorted(out, key=lambda p: p[2])
