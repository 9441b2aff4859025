"""Spectrum synthesis with Turbospectrum v20 and MARCS (ATLAS9 below [Fe/H] -2.5) models.

Submodules (imported lazily on first attribute access; importing this package is cheap):

- :mod:`~specutils_cinn.synthesis.install`: build/locate the install
  (:func:`build_synthesis`, :func:`find_synthesis`, :class:`SynthesisInstall`,
  :class:`SynthesisNotFoundError`).
- :mod:`~specutils_cinn.synthesis.atmospheres`: MARCS x3 grid and interpolation
  (:class:`MarcsGrid`, :func:`atmosphere_for`, :class:`Atmosphere`).
- :mod:`~specutils_cinn.synthesis.atlas9`: Castelli-Kurucz ATLAS9 grid and interpolation for
  [Fe/H] < -2.5 (:class:`Atlas9Grid`, :func:`atlas9_atmosphere`).
- :mod:`~specutils_cinn.synthesis.turbospectrum`: the Turbospectrum driver
  (:func:`synthesize`, :class:`SynthesisResult`, :class:`NLTEOptions`,
  :func:`babsma_control`, :func:`bsyn_control`).
- :mod:`~specutils_cinn.synthesis.design`: label designs
  (:class:`LabelDesign`, :class:`KielRegion`).
- :mod:`~specutils_cinn.synthesis.runner`: resumable parallel grid runs
  (:class:`GridConfig`, :class:`SynthesisWindow`, :func:`run_grid`, :func:`consolidate_grid`,
  :func:`synthesize_star`).
- :mod:`~specutils_cinn.synthesis.grid_file`: grid files
  (:class:`SynthesisGrid`, :func:`read_grid`, :func:`write_grid`).
- :mod:`~specutils_cinn.synthesis.shards`: the v2 grid's committed shards at 4MOST sampling
  (:func:`read_shards`, :func:`write_shard`, :class:`GridProduct`, :func:`fetch_grid`).
- :mod:`~specutils_cinn.synthesis.sampling`: the wavelength pieces of a star's synthesis.
- :mod:`~specutils_cinn.synthesis.pruning`: per-star line pruning (:class:`LinePruning`);
  :mod:`~specutils_cinn.synthesis.hydrogen_patch`: the hydrogen-wing speed patch.
- :mod:`~specutils_cinn.synthesis.lithium`: 3D NLTE Li lines from breidablik
  (:func:`synthesize_with_lithium`, :func:`breidablik_coverage`; optional dependency).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SynthesisInstall": "install",
    "SynthesisNotFoundError": "install",
    "build_synthesis": "install",
    "find_synthesis": "install",
    "default_prefix": "install",
    "Atmosphere": "atmospheres",
    "MarcsGrid": "atmospheres",
    "atmosphere_for": "atmospheres",
    "Atlas9Grid": "atlas9",
    "atlas9_atmosphere": "atlas9",
    "NLTEOptions": "turbospectrum",
    "SynthesisResult": "turbospectrum",
    "babsma_control": "turbospectrum",
    "bsyn_control": "turbospectrum",
    "synthesize": "turbospectrum",
    "KielRegion": "design",
    "LabelDesign": "design",
    "SynthesisGrid": "grid_file",
    "read_grid": "grid_file",
    "write_grid": "grid_file",
    "LinePruning": "pruning",
    "GridProduct": "shards",
    "fetch_grid": "shards",
    "read_shards": "shards",
    "write_shard": "shards",
    "GridConfig": "runner",
    "SynthesisWindow": "runner",
    "consolidate_grid": "runner",
    "run_grid": "runner",
    "synthesize_star": "runner",
    "breidablik_coverage": "lithium",
    "synthesize_with_lithium": "lithium",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
