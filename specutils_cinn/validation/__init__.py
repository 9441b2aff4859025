"""Validation of a model against spectra with known labels.

`specutils_cinn.validation.metrics` (re-exported here) holds the accuracy and calibration
metrics: bias and scatter of the posterior medians, interval coverage, coverage curves and
simulation-based-calibration ranks. `specutils_cinn.validation.report` builds what the
validation pages and the calibrations run the estimator on (held-out spectra degraded to a
model's setup, solar spectra, noisy realizations) and the numbers the pages report per
population and quality flag; it imports the estimator, so import it explicitly::

    from specutils_cinn.validation.report import heldout_from_grid

`specutils_cinn.validation.rst` formats the tables of the generated pages
(`specutils_cinn.validation.rst.simple_table`).
"""

from __future__ import annotations

from .metrics import (  # noqa: F401  (MAD_TO_SIGMA: kept importable from here)
    MAD_TO_SIGMA,
    RankStatistics,
    coverage_curve,
    interval_coverage,
    level_name,
    posterior_rank_fraction,
    rank_statistics,
    summary_statistics,
)

__all__ = [
    "RankStatistics",
    "coverage_curve",
    "interval_coverage",
    "level_name",
    "posterior_rank_fraction",
    "rank_statistics",
    "summary_statistics",
]
