"""The training steps' batches, drawn in order from one generator, optionally one step ahead.

A training step has two halves that do not depend on each other: drawing the batch (simulated
spectra, the observation model's noise, masks and continuum errors, label jitter), and the
network's forward and backward pass on it. `BatchStream` draws the batches in step order from
one `torch.Generator`; with ``prefetch=True`` it draws the next step's batch on a second thread
while the caller trains on the current one. The generator is used by one thread only and in the
same order either way, so the batches, and the weights trained on them, are identical; on a CPU
with a free core the two halves overlap (``TrainingConfig.prefetch``,
``python benchmarks/bench_training_step.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

__all__ = ["BatchStream"]


class BatchStream:
    """Batches of consecutive training steps from one random generator.

    Parameters
    ----------
    draw : callable
        ``draw(generator) -> batch``: all the randomness of one step comes from ``generator``.
    generator : `torch.Generator`
        The run's generator; while the stream is open nothing else may use it.
    steps : int
        Batches the stream will be asked for (none is drawn beyond them).
    prefetch : bool
        Draw the next batch on a second thread while the caller works on the current one.
        Torch's intra-op thread count of the caller is used on that thread too.

    Notes
    -----
    A checkpoint keeps `generator_state`, the state before the next batch the caller has not
    yet received, so a run that continues from it draws the same batches, with or without
    prefetching. Close the stream (or use it as a context manager) to stop the thread.
    """

    def __init__(self, draw: Callable[[torch.Generator], Any], generator: torch.Generator,
                 steps: int, prefetch: bool = False) -> None:
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self._draw, self._gen, self._left = draw, generator, int(steps)
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="specutils-cinn-batches",
                                         initializer=torch.set_num_threads,
                                         initargs=(torch.get_num_threads(),))
                      if prefetch else None)
        self._ahead: Future | None = None
        self._ahead_state: torch.Tensor | None = None

    def _submit(self) -> None:
        assert self._pool is not None
        self._ahead_state = self._gen.get_state()
        self._ahead = self._pool.submit(self._draw, self._gen)

    def __next__(self) -> Any:
        """The next step's batch.

        Raises
        ------
        StopIteration
            After ``steps`` batches.
        """
        if self._left <= 0:
            raise StopIteration
        self._left -= 1
        if self._pool is None:
            return self._draw(self._gen)
        if self._ahead is None:
            self._submit()
        assert self._ahead is not None
        batch = self._ahead.result()
        self._ahead = None
        if self._left > 0:
            self._submit()
        return batch

    def __iter__(self) -> BatchStream:
        return self

    def generator_state(self) -> torch.Tensor:
        """The generator's state before the next batch not yet returned (for a checkpoint)."""
        if self._ahead is not None:
            self._ahead.exception()          # wait: the thread must be done with the generator
            assert self._ahead_state is not None
            return self._ahead_state
        return self._gen.get_state()

    def close(self) -> None:
        """Stop the drawing thread (a batch being drawn is finished and dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._ahead = None, None

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
