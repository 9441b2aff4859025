"""The conditional invertible neural network: conditioner + GLOW coupling flow."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from numbers import Integral
from typing import Any

import torch
from torch import Tensor, nn

from .conditioning import SpectrumConditioner
from .coupling import GLOWCouplingBlock
from .permutation import PermuteRandom
from .subnet import MLPSubnet

__all__ = [
    "ARCHITECTURE_KEYS",
    "CONDITIONER_KEYS",
    "CONDITIONER_OPTIONAL_KEYS",
    "CPU_CHUNK_BYTES",
    "DEFAULT_MAX_CHUNK_BYTES",
    "SAMPLING_PRECISIONS",
    "ConditionalFlow",
    "ConditionalINN",
    "auto_chunk_size",
    "build_cinn",
]

#: Keys of `ConditionalINN.architecture` (all required by `build_cinn`).
ARCHITECTURE_KEYS = (
    "n_params",
    "npix",
    "conditioner",
    "n_blocks",
    "subnet_hidden",
    "subnet_layers",
    "clamp",
    "permutation_seed",
)
#: Keys of the ``"conditioner"`` entry of an architecture (all required).
CONDITIONER_KEYS = ("kind", "channels", "features", "pool", "hidden")
#: Keys a conditioner's description may also have: the line-window branch
#: (`~specutils_cinn.flows.SpectrumConditioner`), absent in networks without one.
CONDITIONER_OPTIONAL_KEYS = ("line_pixels", "line_hidden", "line_standardize")
#: Default bound, in bytes, on ``B * chunk_size * width * itemsize`` in `ConditionalINN.sample`
#: (the size of one activation tensor of a chunk) on accelerators: bounds the memory.
DEFAULT_MAX_CHUNK_BYTES = 256 * 2**20
#: The same bound on CPU, smaller because cache-sized chunks are markedly faster there
#: (about 1.8x measured against unchunked draws at 16 MB per activation tensor).
CPU_CHUNK_BYTES = 4 * 2**20
#: Precisions of `ConditionalINN.set_sampling_precision`: the dtype of the subnets' hidden
#: layers in `ConditionalINN.reverse_draws` (None: the network's own float32).
SAMPLING_PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def auto_chunk_size(
    batch_size: int,
    n_samples: int,
    width: int,
    *,
    itemsize: int = 4,
    max_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> int:
    """Number of draws per spectrum to process at once so activations stay bounded.

    Parameters
    ----------
    batch_size : int
        Number of spectra ``B``.
    n_samples : int
        Draws per spectrum ``S``.
    width : int
        Widest activation per draw (the subnet hidden width).
    itemsize : int, optional
        Bytes per element (4 for float32).
    max_bytes : int, optional
        Bound on ``batch_size * chunk * width * itemsize``.

    Returns
    -------
    int
        ``chunk`` in ``[1, n_samples]``: the largest value respecting the bound, but at least
        1 (a single draw per spectrum may exceed ``max_bytes`` for a very large batch; split
        the batch in that case).
    """
    per_draw = max(int(batch_size), 1) * max(int(width), 1) * max(int(itemsize), 1)
    return max(1, min(int(n_samples), int(max_bytes) // per_draw))


class ConditionalFlow(nn.Module):
    """A sequence of invertible blocks sharing one conditioning vector (FrEIA ``SequenceINN``).

    Parameters
    ----------
    blocks : iterable of torch.nn.Module
        Blocks with ``forward(x, c) -> (y, log_det)``, ``reverse(y, c)``,
        ``precondition(c)`` and ``reverse_conditioned(z, cache)``, such as
        `~specutils_cinn.flows.GLOWCouplingBlock` and `~specutils_cinn.flows.PermuteRandom`.
        They are stored in ``module_list`` (a `torch.nn.ModuleList`), giving FrEIA's
        state-dict names ``module_list.0.subnet1.0.weight``, ``module_list.1.perm``, ...
    """

    def __init__(self, blocks: Iterable[nn.Module]) -> None:
        super().__init__()
        self.module_list = nn.ModuleList(blocks)

    def forward(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Map parameters to latent space.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``[B, D]``.
        c : torch.Tensor
            Conditioning features, shape ``[B, F]``.

        Returns
        -------
        z : torch.Tensor
            Shape ``[B, D]``.
        log_det : torch.Tensor
            ``log |det dz/dx|``, shape ``[B]``.
        """
        log_det = x.new_zeros(x.shape[0])
        for block in self.module_list:
            x, ld = block(x, c)
            log_det = log_det + ld
        return x, log_det

    def reverse(self, z: Tensor, c: Tensor) -> Tensor:
        """Map latent vectors back to parameters.

        Parameters
        ----------
        z : torch.Tensor
            Shape ``[B, D]``.
        c : torch.Tensor
            Conditioning features, shape ``[B, F]``.

        Returns
        -------
        torch.Tensor
            Shape ``[B, D]``.
        """
        for block in reversed(self.module_list):
            z = block.reverse(z, c)
        return z

    def precondition(self, c: Tensor, dtype: torch.dtype | None = None) -> list[Any]:
        """Per-block caches of the conditioning terms (see ``GLOWCouplingBlock.precondition``).

        Parameters
        ----------
        c : torch.Tensor
            Conditioning features, shape ``[B, F]``.
        dtype : torch.dtype, optional
            Reduced precision of the subnets' hidden layers (see
            ``GLOWCouplingBlock.precondition``).

        Returns
        -------
        list
            One cache per block, in block order.
        """
        return [block.precondition(c, dtype) for block in self.module_list]

    def reverse_conditioned(self, z: Tensor, caches: list[Any]) -> Tensor:
        """Reverse pass for draws of shape ``[B, S, D]`` using `precondition` caches.

        Parameters
        ----------
        z : torch.Tensor
            Shape ``[B, S, D]``.
        caches : list
            Output of `precondition`.

        Returns
        -------
        torch.Tensor
            Shape ``[B, S, D]``.
        """
        if len(caches) != len(self.module_list):
            raise ValueError(f"expected {len(self.module_list)} caches, got {len(caches)}")
        for block, cache in zip(reversed(self.module_list), reversed(caches), strict=True):
            z = block.reverse_conditioned(z, cache)
        return z


class ConditionalINN(nn.Module):
    """Conditional INN mapping stellar parameters to a standard-normal latent space.

    ``conditioner`` turns an encoded spectrum into features ``c``; ``flow`` (a
    `ConditionalFlow`) alternates ``n_blocks`` `~specutils_cinn.flows.GLOWCouplingBlock` and
    `~specutils_cinn.flows.PermuteRandom` (block ``i`` uses seed ``permutation_seed + i``),
    all conditioned on ``c``.  State-dict keys follow FrEIA 0.2, e.g.
    ``flow.module_list.0.subnet1.0.weight`` and ``flow.module_list.1.perm``.
    Parameters are expected standardized (zero mean, unit variance).

    Parameters
    ----------
    n_params : int
        Number of (standardized) parameters ``D``; at least 2.
    conditioner : SpectrumConditioner
        The conditioning network.
    n_blocks : int
        Number of coupling blocks.
    subnet_hidden : int
        Hidden width of the coupling subnets.
    subnet_layers : int
        Number of hidden layers of the coupling subnets (see `~specutils_cinn.flows.make_subnet`).
    clamp : float, optional
        Soft clamp of the coupling log-scales.
    permutation_seed : int, optional
        Seed of the first permutation.

    Raises
    ------
    ValueError
        If an argument is invalid.
    TypeError
        If ``conditioner`` is not a `~specutils_cinn.flows.SpectrumConditioner`.
    """

    def __init__(
        self,
        n_params: int,
        conditioner: SpectrumConditioner,
        n_blocks: int,
        subnet_hidden: int,
        subnet_layers: int,
        clamp: float = 2.0,
        permutation_seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(conditioner, SpectrumConditioner):
            raise TypeError(
                f"conditioner must be a SpectrumConditioner, got {type(conditioner).__name__}"
            )
        self.n_params = _check_int("n_params", n_params, 2)
        self.n_blocks = _check_int("n_blocks", n_blocks, 1)
        self.permutation_seed = _check_int("permutation_seed", permutation_seed, 0)
        subnet = MLPSubnet(subnet_hidden, subnet_layers)
        self.subnet_hidden = subnet.hidden
        self.subnet_layers = subnet.n_layers
        self.conditioner = conditioner
        blocks: list[nn.Module] = []
        for i in range(self.n_blocks):
            blocks.append(GLOWCouplingBlock(self.n_params, conditioner.features, subnet, clamp))
            blocks.append(PermuteRandom(self.n_params, self.permutation_seed + i))
        self.clamp = float(clamp)
        self.flow = ConditionalFlow(blocks)
        self._compiled_reverse: Callable[..., Tensor] | None = None
        self._sampling_dtype: torch.dtype | None = None

    def compile_sampling(self, enable: bool = True) -> ConditionalINN:
        """Compile the reverse pass that `reverse_draws` runs, with `torch.compile`.

        The flow's reverse pass over the draws (the subnets of every coupling block, the
        clamps and the permutations) is compiled once, with dynamic shapes (any number of
        spectra and draws), on its first use; that first call takes tens of seconds and needs
        a C++ compiler on CPU (Triton on CUDA). Later draws agree with the uncompiled ones to
        float32 rounding (``benchmarks/bench_predict.py --compile`` measures the speed-up). If
        compilation fails, a `RuntimeWarning` says so and the uncompiled pass is used.

        Parameters
        ----------
        enable : bool
            False goes back to the uncompiled pass.

        Returns
        -------
        ConditionalINN
            ``self``.
        """
        self._compiled_reverse = (torch.compile(self.flow.reverse_conditioned, dynamic=True)
                                  if enable else None)
        return self

    def set_sampling_precision(self, precision: str = "float32") -> ConditionalINN:
        """Choose the precision of the subnets' hidden layers in `reverse_draws`.

        ``"bfloat16"`` runs the hidden-to-hidden products of every coupling subnet (nearly all
        of the work of drawing) in bfloat16, with float32 accumulation where the hardware has
        it (GPUs with bfloat16 support, CPUs with AMX or AVX-512 BF16; elsewhere torch
        emulates it, slower than float32). The latent draws, the first and last subnet
        layers, the clamps, exponentials and shifts of the couplings, and everything after the
        flow stay float32. ``scripts/precision_check.py`` measures what it does to posterior
        quantiles against the Monte-Carlo error of float32 draws.

        Parameters
        ----------
        precision : {"float32", "bfloat16"}
            The precision; ``"float32"`` (the default) is the network's own.

        Returns
        -------
        ConditionalINN
            ``self``.

        Raises
        ------
        ValueError
            If ``precision`` is not one of the above.
        """
        if precision not in SAMPLING_PRECISIONS:
            raise ValueError(f"precision must be one of {list(SAMPLING_PRECISIONS)}, "
                             f"got {precision!r}")
        self._sampling_dtype = SAMPLING_PRECISIONS[precision]
        return self

    @property
    def sampling_precision(self) -> str:
        """The precision of `reverse_draws`' subnet hidden layers (`set_sampling_precision`)."""
        dtype = getattr(self, "_sampling_dtype", None)
        return next(k for k, v in SAMPLING_PRECISIONS.items() if v == dtype)

    @property
    def sampling_compiled(self) -> bool:
        """Whether `reverse_draws` uses a compiled reverse pass (`compile_sampling`)."""
        return self._compiled_reverse is not None

    def __getstate__(self) -> dict[str, Any]:
        # a compiled function does not pickle or copy: a copy (e.g. a Dask worker's) is
        # uncompiled until its own compile_sampling
        return {**self.__dict__, "_compiled_reverse": None}

    def _reverse_conditioned(self, z: Tensor, caches: list[Any]) -> Tensor:
        if self._compiled_reverse is not None:
            try:
                return self._compiled_reverse(z, caches)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: run uncompiled
                self._compiled_reverse = None
                warnings.warn(f"the compiled reverse pass failed ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); using the uncompiled one", RuntimeWarning,
                              stacklevel=3)
        return self.flow.reverse_conditioned(z, caches)

    @property
    def npix(self) -> int:
        """Number of pixels of the expected input spectra."""
        return self.conditioner.npix

    @property
    def architecture(self) -> dict[str, Any]:
        """JSON-able description from which `build_cinn` rebuilds an identical module.

        Keys are ``ARCHITECTURE_KEYS``; ``"conditioner"`` is a dict with ``CONDITIONER_KEYS``.
        """
        return {
            "n_params": self.n_params,
            "npix": self.npix,
            "conditioner": self.conditioner.config(),
            "n_blocks": self.n_blocks,
            "subnet_hidden": self.subnet_hidden,
            "subnet_layers": self.subnet_layers,
            "clamp": self.clamp,
            "permutation_seed": self.permutation_seed,
        }

    def _check_x(self, x: Tensor, inputs: Tensor, name: str) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_params:
            raise ValueError(f"{name} must have shape [B, {self.n_params}], got {tuple(x.shape)}")
        if inputs.shape[0] != x.shape[0]:
            raise ValueError(
                f"{name} and inputs have different batch sizes: {x.shape[0]} != {inputs.shape[0]}"
            )

    def condition(self, inputs: Tensor) -> Tensor:
        """Compute the conditioning features, once per spectrum.

        Parameters
        ----------
        inputs : torch.Tensor
            Encoded spectra ``[B, 3, npix]`` (see `~specutils_cinn.flows.encode_inputs`).

        Returns
        -------
        torch.Tensor
            Features ``[B, F]`` for `sample`.
        """
        return self.conditioner(inputs)

    def forward(self, x: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Map standardized parameters to the latent space (training direction).

        Parameters
        ----------
        x : torch.Tensor
            Standardized parameters ``[B, D]``.
        inputs : torch.Tensor
            Encoded spectra ``[B, 3, npix]``.

        Returns
        -------
        z : torch.Tensor
            Latent vectors ``[B, D]``.
        log_det : torch.Tensor
            ``log |det dz/dx|``, shape ``[B]``.
        """
        self._check_x(x, inputs, "x")
        return self.flow(x, self.condition(inputs))

    def reverse(self, z: Tensor, inputs: Tensor) -> Tensor:
        """Map latent vectors to standardized parameters (plain, unchunked reverse pass).

        Parameters
        ----------
        z : torch.Tensor
            Latent vectors ``[B, D]``.
        inputs : torch.Tensor
            Encoded spectra ``[B, 3, npix]``.

        Returns
        -------
        torch.Tensor
            Standardized parameters ``[B, D]``.
        """
        self._check_x(z, inputs, "z")
        return self.flow.reverse(z, self.condition(inputs))

    def log_prob(self, x: Tensor, inputs: Tensor) -> Tensor:
        """Log posterior density of standardized parameters under a standard-normal latent.

        Parameters
        ----------
        x : torch.Tensor
            Standardized parameters ``[B, D]``.
        inputs : torch.Tensor
            Encoded spectra ``[B, 3, npix]``.

        Returns
        -------
        torch.Tensor
            ``-0.5 * sum(z**2) - 0.5 * D * log(2 pi) + log_det``, shape ``[B]``.
        """
        z, log_det = self(x, inputs)
        const = 0.5 * self.n_params * math.log(2.0 * math.pi)
        return -0.5 * (z * z).sum(dim=1) - const + log_det

    def nll(self, x: Tensor, inputs: Tensor | None = None, *, per_dim: bool = False,
            features: Tensor | None = None) -> Tensor:
        """Training loss: mean over the batch of ``0.5 * sum(z**2) - log_det``.

        The constant ``0.5 * D * log(2 pi)`` is omitted (see `log_prob` for the full density).

        Parameters
        ----------
        x : torch.Tensor
            Standardized parameters ``[B, D]``.
        inputs : torch.Tensor
            Encoded spectra ``[B, 3, npix]``.
        per_dim : bool, optional
            Divide by ``D``.
        features : torch.Tensor, optional
            Conditioning features ``[B, F]`` already computed from the spectra (`condition`),
            instead of ``inputs``; exactly one of the two is given.

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        if (inputs is None) == (features is None):
            raise ValueError("give exactly one of inputs and features")
        if features is None:
            z, log_det = self(x, inputs)
        else:
            self._check_features(features)
            z, log_det = self.flow(x, features)
        loss = (0.5 * (z * z).sum(dim=1) - log_det).mean()
        return loss / self.n_params if per_dim else loss

    def _check_features(self, features: Tensor) -> None:
        features_dim = self.conditioner.features
        if features.ndim != 2 or features.shape[1] != features_dim:
            raise ValueError(
                f"features must have shape [B, {features_dim}], got {tuple(features.shape)}"
            )
        if not features.is_floating_point():
            raise TypeError(f"features must be floating point, got {features.dtype}")

    def reverse_draws(self, z: Tensor, features: Tensor, chunk_size: int | None = None) -> Tensor:
        """Reverse pass for ``S`` latent draws per spectrum, preconditioned and chunked.

        The conditioning term of every subnet's first layer is computed once per spectrum
        (``[B, hidden]``) and broadcast over the draws; the draws are processed in chunks of
        ``chunk_size`` along ``S``.

        Parameters
        ----------
        z : torch.Tensor
            Latent draws ``[B, S, D]``.
        features : torch.Tensor
            Conditioning features ``[B, F]`` from `condition`.
        chunk_size : int, optional
            Draws per spectrum per chunk; default `auto_chunk_size` with ``CPU_CHUNK_BYTES``
            on CPU and ``DEFAULT_MAX_CHUNK_BYTES`` on other devices.

        Returns
        -------
        torch.Tensor
            Standardized parameters ``[B, S, D]``.
        """
        self._check_features(features)
        if z.ndim != 3 or z.shape[0] != features.shape[0] or z.shape[2] != self.n_params:
            raise ValueError(
                f"z must have shape [{features.shape[0]}, S, {self.n_params}], got {tuple(z.shape)}"
            )
        n_samples = z.shape[1]
        if chunk_size is None:
            width = max(self.subnet_hidden, 2 * self.n_params)
            max_bytes = CPU_CHUNK_BYTES if z.device.type == "cpu" else DEFAULT_MAX_CHUNK_BYTES
            chunk_size = auto_chunk_size(
                z.shape[0], n_samples, width, itemsize=z.element_size(), max_bytes=max_bytes
            )
        chunk_size = _check_int("chunk_size", chunk_size, 1)
        caches = self.flow.precondition(features, getattr(self, "_sampling_dtype", None))
        if chunk_size >= n_samples:
            return self._reverse_conditioned(z, caches)
        out = torch.empty_like(z)
        for start in range(0, n_samples, chunk_size):
            stop = min(start + chunk_size, n_samples)
            out[:, start:stop] = self._reverse_conditioned(z[:, start:stop], caches)
        return out

    def sample(
        self,
        features: Tensor,
        n_samples: int,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
    ) -> Tensor:
        """Draw standardized parameters from the posterior of each spectrum.

        All latent draws are generated first, exactly as ``torch.randn((B, n_samples, D),
        generator=generator, device=features.device, dtype=features.dtype)``, so the result
        for a given generator state does not depend on ``chunk_size`` (up to floating-point
        rounding of differently shaped matrix products).  They are then mapped through
        `reverse_draws`.

        Memory: ``z`` and the result hold ``2 * B * S * D`` elements; the reverse pass holds a
        few activation tensors of ``B * chunk_size * width`` elements, where ``width`` is
        ``max(subnet_hidden, 2 * D)``.  By default ``chunk_size`` keeps
        ``B * chunk_size * width * itemsize`` below ``DEFAULT_MAX_CHUNK_BYTES`` (256 MiB) on
        accelerators and below ``CPU_CHUNK_BYTES`` (4 MiB, for cache efficiency) on CPU; for
        a batch so large that a single draw exceeds that bound, split the batch.

        Wrap calls in `torch.inference_mode` (or `torch.no_grad`) for speed; this method
        does not disable gradients itself.

        Parameters
        ----------
        features : torch.Tensor
            Conditioning features ``[B, F]`` from `condition`.
        n_samples : int
            Draws per spectrum ``S``.
        generator : torch.Generator, optional
            Random generator on ``features.device``; default: the global generator.
        chunk_size : int, optional
            Draws per spectrum per chunk; default from `auto_chunk_size`.

        Returns
        -------
        torch.Tensor
            Standardized parameter draws ``[B, S, D]``.
        """
        self._check_features(features)
        n_samples = _check_int("n_samples", n_samples, 1)
        z = torch.randn(
            (features.shape[0], n_samples, self.n_params),
            generator=generator,
            device=features.device,
            dtype=features.dtype,
        )
        return self.reverse_draws(z, features, chunk_size)


def build_cinn(architecture: Mapping[str, Any]) -> ConditionalINN:
    """Build a freshly initialized `ConditionalINN` from its `~ConditionalINN.architecture`.

    ``build_cinn(model.architecture)`` has the same structure, parameter names and
    permutations as ``model``; load the weights with ``load_state_dict``.

    Parameters
    ----------
    architecture : mapping
        With exactly the keys ``ARCHITECTURE_KEYS``; ``architecture["conditioner"]`` with
        the keys ``CONDITIONER_KEYS`` and any of ``CONDITIONER_OPTIONAL_KEYS``.

    Returns
    -------
    ConditionalINN
        The new (untrained) network.

    Raises
    ------
    ValueError
        If a key is missing or unknown, or a value is invalid.
    """
    if not isinstance(architecture, Mapping):
        raise ValueError(f"architecture must be a mapping, got {type(architecture).__name__}")
    _check_keys("architecture", architecture, ARCHITECTURE_KEYS)
    cond = architecture["conditioner"]
    if not isinstance(cond, Mapping):
        raise ValueError(f"architecture['conditioner'] must be a mapping, got {cond!r}")
    _check_keys("architecture['conditioner']", cond, CONDITIONER_KEYS,
                CONDITIONER_OPTIONAL_KEYS)
    arch = copy.deepcopy(dict(architecture))
    try:
        conditioner = SpectrumConditioner(
            npix=arch["npix"],
            channels=cond["channels"],
            features=cond["features"],
            kind=cond["kind"],
            pool=cond["pool"],
            hidden=cond["hidden"],
            line_pixels=cond.get("line_pixels"),
            line_hidden=cond.get("line_hidden", 128),
            line_standardize=cond.get("line_standardize", False),
        )
        return ConditionalINN(
            n_params=arch["n_params"],
            conditioner=conditioner,
            n_blocks=arch["n_blocks"],
            subnet_hidden=arch["subnet_hidden"],
            subnet_layers=arch["subnet_layers"],
            clamp=arch["clamp"],
            permutation_seed=arch["permutation_seed"],
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid architecture: {exc}") from exc


def _check_keys(name: str, mapping: Mapping[str, Any], expected: tuple[str, ...],
                optional: tuple[str, ...] = ()) -> None:
    missing = [k for k in expected if k not in mapping]
    unknown = sorted(str(k) for k in mapping if k not in expected + optional)
    if missing or unknown:
        raise ValueError(
            f"{name}: missing keys {missing}, unknown keys {unknown}; expected {list(expected)}"
        )
