"""Old home of the training simulator; its names moved (this module goes away in the next release).

`~specutils_cinn.training.LabelPrior`, `~specutils_cinn.training.EmulatorSimulator` and
`~specutils_cinn.training.SpectrumSimulator` are in ``specutils_cinn.training`` (modules
``specutils_cinn.training.prior`` and ``specutils_cinn.training.simulation``),
`~specutils_cinn.instruments.rotation.BinnedRotation` in ``specutils_cinn.instruments.rotation``
and `~specutils_cinn.parameters.DEFAULT_PARAMETERS`
in ``specutils_cinn.parameters``. They are re-exported here for one release; import them from
their new homes.
"""

from __future__ import annotations

from .instruments.rotation import BinnedRotation
from .parameters import DEFAULT_PARAMETERS
from .training.prior import LabelPrior
from .training.simulation import EmulatorSimulator, SpectrumSimulator

__all__ = [
    "DEFAULT_PARAMETERS",
    "BinnedRotation",
    "EmulatorSimulator",
    "LabelPrior",
    "SpectrumSimulator",
]
