"""Posterior draws of prepared spectra: one random stream per spectrum, batched network calls.

`draw_batches` is the loop behind `~specutils_cinn.CINNParameterEstimator.predict` and
`~specutils_cinn.CINNParameterEstimator.sample_posterior`. The latent draws of each spectrum
come from its own random stream (`row_seeds`), so that a row does not depend on the other
spectra, their order or the batch size.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._hashing import hash_rows, splitmix64
from .flags import QualityFlag
from .flows.conditioning import encode_inputs

if TYPE_CHECKING:
    from .calibration import PosteriorCalibration
    from .inputs import PreparedSpectra
    from .model import CINNModel
    from .options import PredictionOptions

__all__ = ["ROWS_PER_BATCH", "default_batch_size", "draw_batches", "inferred_rows", "row_seeds"]

#: Upper bound on spectra x draws handled at once when ``batch_size`` is None.
ROWS_PER_BATCH = 2**18


def inferred_rows(prepared: PreparedSpectra) -> np.ndarray:
    """Rows that go through the network; the others hold NaN.

    Parameters
    ----------
    prepared : `~specutils_cinn.inputs.PreparedSpectra`
        The prepared spectra.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(N,)``: False for rows flagged ``NO_OVERLAP`` or ``NO_VALID_DATA``
        or without coverage.
    """
    hopeless = QualityFlag.NO_OVERLAP | QualityFlag.NO_VALID_DATA
    return ((prepared.flags & hopeless) == 0) & (prepared.coverage > 0)


def row_seeds(seed: int, prepared: PreparedSpectra) -> np.ndarray:
    """Seed of each row's random stream: the user's seed mixed with the row's content hash.

    Parameters
    ----------
    seed : int
        The call's seed, from 0 to 2**63 - 1.
    prepared : `~specutils_cinn.inputs.PreparedSpectra`
        The prepared spectra. The hash is
        `~specutils_cinn.inputs.PreparedSpectra.content_hash`, or, where that is not known, a
        hash of the prepared arrays.

    Returns
    -------
    numpy.ndarray
        int64, shape ``(N,)``, each below 2**63 (torch accepts them).
    """
    content = prepared.content_hash
    if content is None:
        content = splitmix64(
            hash_rows(prepared.flux, 1) ^ splitmix64(hash_rows(prepared.sigma, 2))
            ^ hash_rows(prepared.valid, 3)
        )
    mixed = splitmix64(np.asarray(content, dtype=np.uint64) ^ splitmix64(np.uint64(seed)))
    return (mixed >> np.uint64(1)).astype(np.int64)


def default_batch_size(n_samples: int) -> int:
    """Spectra per network call when ``batch_size`` is None.

    Parameters
    ----------
    n_samples : int
        Draws per spectrum.

    Returns
    -------
    int
        ``ROWS_PER_BATCH // n_samples``, clipped to 1 ... 4096.
    """
    return int(np.clip(ROWS_PER_BATCH // n_samples, 1, 4096))


def draw_batches(
    model: CINNModel,
    prepared: PreparedSpectra,
    options: PredictionOptions,
    device: torch.device,
    calibration: PosteriorCalibration | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Posterior draws of the inferred rows, one batch of spectra at a time.

    Parameters
    ----------
    model : `~specutils_cinn.model.CINNModel`
        The model; its network is moved to ``device``.
    prepared : `~specutils_cinn.inputs.PreparedSpectra`
        The spectra on the model's grid.
    options : `~specutils_cinn.options.PredictionOptions`
        ``n_samples``, ``batch_size``, ``seed`` (which must be fixed, see
        `~specutils_cinn.options.PredictionOptions.with_seed`) and ``progress`` are used.
    device : `torch.device`
        Where the network runs.
    calibration : `~specutils_cinn.calibration.PosteriorCalibration`, optional
        Applied to the draws of each batch.

    Yields
    ------
    rows : numpy.ndarray
        Indices of the batch's rows in ``prepared``.
    draws : `torch.Tensor`
        Shape ``(B, n_samples, D)`` on ``device``, in physical units.

    Raises
    ------
    ValueError
        If ``options.seed`` is None.
    """
    from tqdm.auto import tqdm

    if options.seed is None:
        raise ValueError("options.seed must be fixed (PredictionOptions.with_seed)")
    n_samples, progress = options.n_samples, options.progress
    rows_all = np.flatnonzero(inferred_rows(prepared))
    batch_size = options.batch_size
    if batch_size is None:
        batch_size = default_batch_size(n_samples)
    md = model.metadata
    parameters = list(md.parameter_names)
    network = model.network.to(device)
    mean = torch.as_tensor(md.label_mean, dtype=torch.float32, device=device)
    scale = torch.as_tensor(md.label_std, dtype=torch.float32, device=device)
    generator = torch.Generator(device=device)
    seeds = row_seeds(options.seed, prepared)
    n_params = len(parameters)
    report = progress if callable(progress) else None
    if report is not None:
        show = False
    else:
        show = sys.stderr.isatty() if progress is None else bool(progress)
    with (
        torch.inference_mode(),
        tqdm(total=len(rows_all), disable=not show, unit="spectra", desc="cINN posterior") as bar,
    ):
        for start in range(0, len(rows_all), batch_size):
            rows = rows_all[start : start + batch_size]
            inputs = encode_inputs(
                torch.from_numpy(prepared.flux[rows]).to(device, non_blocking=True),
                torch.from_numpy(prepared.sigma[rows]).to(device, non_blocking=True),
                torch.from_numpy(prepared.valid[rows]).to(device, non_blocking=True),
            )
            features = network.condition(inputs)
            # one random stream per spectrum, keyed by the seed and its content: a row's
            # draws do not depend on the other spectra, their order or the batch size
            z = torch.empty((len(rows), n_samples, n_params), dtype=features.dtype,
                            device=device)
            for i, row_seed in enumerate(seeds[rows].tolist()):
                generator.manual_seed(row_seed)
                z[i] = torch.randn((n_samples, n_params), generator=generator,
                                   dtype=features.dtype, device=device)
            draws = network.reverse_draws(z, features) * scale + mean
            if calibration is not None:
                draws = calibration.apply(draws, parameters)
            yield rows, draws
            bar.update(len(rows))
            if report is not None:
                report(start + len(rows), len(rows_all))
