"""Moved to `specutils_cinn.inputs.noise_estimate`; this path goes away in the next release.

Kept for one release: it re-exports the public names of `specutils_cinn.inputs.noise_estimate`.
"""

from .inputs.noise_estimate import der_snr, masked_quantile

__all__ = ["der_snr", "masked_quantile"]
