"""Seconds per training step, with and without drawing the next batch on a second thread.

A step of `specutils_cinn.training.train_model` draws a batch (simulated spectra from the
configuration's emulator, rotation, noise, masks, continuum errors, renormalization) and then
trains the network on it. ``TrainingConfig.prefetch`` draws the next batch on a second thread
while the network trains (`specutils_cinn.training.BatchStream`); both runs below use the same
configuration, seed and thread count, and train to the same weights (tests/training/
test_batches.py). The baseline is the serial loop as it was before prefetching existed.

Each mode runs ``2 x --steps`` steps through `train_model` (without the configuration's
held-out and selection sets, with a 64-spectrum validation set evaluated every ``--steps``
steps) and times the second half (the first steps allocate the buffers); the timed half holds
one evaluation of the 64 spectra. Threads per mode: ``--threads`` (torch's intra-op threads;
the second thread of prefetching comes on top). The load average before each mode is printed;
a busy machine gives smaller gains.

Usage::

    python benchmarks/bench_training_step.py configs/4most-hr-lte-v2.toml --steps 30 \\
        --rst docs/training/prefetch_hr.rst
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch

from specutils_cinn.devices import cpu_name
from specutils_cinn.inputs import PixelMask
from specutils_cinn.training import EmulatorSimulator, read_training_file, train_model


def time_steps(cfg, sim, prefetch: bool, steps: int, threads: int) -> float:
    """Seconds per step of `train_model` on ``sim`` (the second ``steps`` of ``2 x steps``)."""
    marks: list[tuple[int, float]] = []

    def log(msg: str) -> None:
        if msg.startswith("step "):
            marks.append((int(msg.split()[1].split("/")[0]), time.perf_counter()))

    tc = dataclasses.replace(cfg.training, steps=2 * steps, eval_every=steps,
                             validation_size=64, warmup_steps=1, threads=threads,
                             prefetch=prefetch, device="cpu")
    mask = cfg.model.get("pixel_mask")
    train_model(sim, cfg.architecture, tc, name="bench", version="0.0.0",
                normalization=cfg.model.get("normalization"), log=log,
                pixel_mask=None if mask is None else PixelMask.read(cfg.base / mask))
    t = dict(marks)
    return (t[2 * steps] - t[steps]) / steps


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="training configuration with a [simulator] table")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rst", help="write the table (reStructuredText) here")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be positive")
    if args.rst and not Path(args.rst).parent.is_dir():
        ap.error(f"the folder of --rst does not exist: {args.rst}")
    cfg = read_training_file(args.config)
    if cfg.simulator is None:
        ap.error("the configuration has no [simulator] table")
    sim = EmulatorSimulator.from_config(cfg.simulator, cfg.base)
    rows = []
    for prefetch in (False, True):
        load = os.getloadavg()[0]
        s = time_steps(cfg, sim, prefetch, args.steps, args.threads)
        rows.append((prefetch, s, load))
        print(f"prefetch={prefetch}: {s:.3f} s/step (load average before: {load:.2f})",
              flush=True)
    serial, ahead = rows[0][1], rows[1][1]
    hw = (f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{args.threads} intra-op thread(s)")
    lines = [
        f"Training steps of ``{args.config}`` (batch {cfg.training.batch_size}, "
        f"{sim.grid.npix} pixels), {args.steps} timed steps per mode; {hw}.",
        f"Command: ``python benchmarks/bench_training_step.py {args.config} --steps "
        f"{args.steps}``",
        "",
        "========  ===========  ============  ===========",
        "Mode      s per step   Speed-up      Load before",
        "========  ===========  ============  ===========",
        f"serial    {serial:<11.3f}  {1.0:<12.2f}  {rows[0][2]:.2f}",
        f"prefetch  {ahead:<11.3f}  {serial / ahead:<12.2f}  {rows[1][2]:.2f}",
        "========  ===========  ============  ===========",
        "",
    ]
    text = "\n".join(lines)
    if args.rst:
        Path(args.rst).write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
