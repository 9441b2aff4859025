"""Conditional invertible neural network building blocks (FrEIA 0.2 compatible).

The state-dict layout of `ConditionalINN` follows FrEIA 0.2 (``SequenceINN`` of
``GLOWCouplingBlock`` and ``PermuteRandom``), without depending on FrEIA.
"""

from __future__ import annotations

from .cinn import (
    ARCHITECTURE_KEYS,
    CONDITIONER_KEYS,
    CONDITIONER_OPTIONAL_KEYS,
    CPU_CHUNK_BYTES,
    DEFAULT_MAX_CHUNK_BYTES,
    ConditionalFlow,
    ConditionalINN,
    auto_chunk_size,
    build_cinn,
)
from .conditioning import (
    FLUX_FILL,
    LOG_SIGMA_FILL,
    SIGMA_MAX,
    SIGMA_MIN,
    SpectrumConditioner,
    encode_inputs,
)
from .coupling import CouplingCache, GLOWCouplingBlock, SubnetCache, soft_clamp
from .permutation import PermuteRandom
from .subnet import MLPSubnet, make_subnet

__all__ = [
    "ARCHITECTURE_KEYS",
    "CONDITIONER_KEYS",
    "CONDITIONER_OPTIONAL_KEYS",
    "CPU_CHUNK_BYTES",
    "DEFAULT_MAX_CHUNK_BYTES",
    "FLUX_FILL",
    "LOG_SIGMA_FILL",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "ConditionalFlow",
    "ConditionalINN",
    "CouplingCache",
    "GLOWCouplingBlock",
    "MLPSubnet",
    "PermuteRandom",
    "SpectrumConditioner",
    "SubnetCache",
    "auto_chunk_size",
    "build_cinn",
    "encode_inputs",
    "make_subnet",
    "soft_clamp",
]
