"""How far bfloat16 sampling moves posterior quantiles, against the Monte-Carlo error of float32.

`~specutils_cinn.CINNParameterEstimator.set_sampling_precision` can run the hidden layers of
the flow's subnets in bfloat16. This script predicts the held-out stars of a synthesis grid
(noisy, at each ``--snr`` per Angstrom) three times with the full estimator path:

- float32 with seed A (the reference);
- bfloat16 with seed A: the same latent draws, so any difference is the precision's;
- float32 with seed B: the Monte-Carlo error of ``--draws`` draws per spectrum.

For each parameter and quantile (16, 50, 84 %) it reports the median and largest difference
from the reference in units of each spectrum's posterior sigma ((p84 - p16) / 2), for
bfloat16 and for the other seed, and the wall time of each run on this device. bfloat16 is
harmless where its shifts are well below the seed-to-seed differences.

On a CPU without native bfloat16 (no AMX / AVX-512 BF16) torch emulates it: the numbers are
those of bfloat16 arithmetic, the times are not those of bfloat16 hardware.

Usage::

    python scripts/precision_check.py --model 4most-hr-lte \\
        --grid ../shared/data/ts_lte_seed/ts_lte_seed.npz --snr 50 250 --draws 1000 \\
        --rst docs/models/precision_hr.rst
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.results import quantile_column_name
from specutils_cinn.validation.heldout import heldout_from_grid, noisy_spectrum
from specutils_cinn.validation.rst import simple_table

LEVELS = (0.16, 0.5, 0.84)


def _run(est: CINNParameterEstimator, spectrum, precision: str, seed: int, draws: int,
         device: str) -> tuple[dict[str, np.ndarray], float]:
    est.set_sampling_precision(precision)
    t0 = time.perf_counter()
    table = est.predict(spectrum, n_samples=draws, seed=seed, quantiles=LEVELS, device=device)
    seconds = time.perf_counter() - t0
    out = {}
    for p in est.parameters:
        cols = [table[quantile_column_name(p, q)] for q in LEVELS]
        out[p] = np.stack([np.asarray(getattr(c, "value", c), dtype=float) for c in cols], axis=1)
    return out, seconds


def _shifts(ref: dict, other: dict) -> dict[str, np.ndarray]:
    """|other - ref| / sigma for every spectrum and quantile, per parameter."""
    out = {}
    for p, q in ref.items():
        sigma = np.maximum((q[:, 2] - q[:, 0]) / 2.0, 1e-12)
        out[p] = np.abs(other[p] - q) / sigma[:, None]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="4most-hr-lte")
    ap.add_argument("--grid", required=True, type=Path,
                    help="synthesis grid with held-out stars (read_grid; the seed .npz works)")
    ap.add_argument("--snr", type=float, nargs="+", default=[50.0, 250.0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--stars", type=int, default=64, help="held-out spectra used (first N)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rst", type=Path, default=None, help="also write the table as RST")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    est = CINNParameterEstimator.from_pretrained(args.model, device=args.device)
    md = est.model.metadata
    held = heldout_from_grid(est, args.grid, "holdout", 1, seed=0)
    n = min(args.stars, held.flux.shape[0])
    rows = []
    times = {}
    for snr in args.snr:
        spec = noisy_spectrum(held.flux[:n], md.grid.wavelength, md.grid.pixel_width, snr,
                              seed=int(snr))
        ref, t_ref = _run(est, spec, "float32", 1, args.draws, args.device)
        bf, t_bf = _run(est, spec, "bfloat16", 1, args.draws, args.device)
        other, t_other = _run(est, spec, "float32", 2, args.draws, args.device)
        times[snr] = (t_ref, t_bf, t_other)
        s_bf, s_mc = _shifts(ref, bf), _shifts(ref, other)
        for p in est.parameters:
            rows.append({"snr": snr, "parameter": p,
                         "bf16_median": float(np.median(s_bf[p])),
                         "bf16_max": float(np.max(s_bf[p])),
                         "mc_median": float(np.median(s_mc[p])),
                         "mc_max": float(np.max(s_mc[p]))})
    est.set_sampling_precision("auto")
    hardware = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
                if args.device == "cpu" else torch.cuda.get_device_name(0))
    head = (f"{md.full_name}, {n} held-out spectra of {args.grid.name}, {args.draws} draws; "
            f"device {args.device} ({hardware}), torch {torch.__version__}")
    print(head)
    print(f"{'S/N':>5} {'parameter':<8} {'bf16 med':>9} {'bf16 max':>9} {'MC med':>8} "
          f"{'MC max':>8}   (|dq| / posterior sigma)")
    for r in rows:
        print(f"{r['snr']:5.0f} {r['parameter']:<8} {r['bf16_median']:9.4f} {r['bf16_max']:9.4f} "
              f"{r['mc_median']:8.4f} {r['mc_max']:8.4f}")
    for snr, (a, b, c) in times.items():
        print(f"S/N {snr:g}: float32 {a:.1f} s, bfloat16 {b:.1f} s ({a / b:.2f}x), "
              f"float32 again {c:.1f} s")
    if args.rst:
        args.rst.parent.mkdir(parents=True, exist_ok=True)
        args.rst.write_text(_rst(rows, times, head))


def _rst(rows: list[dict], times: dict, head: str) -> str:
    cols = ["S/N", "parameter", "bfloat16: median", "bfloat16: max", "other seed: median",
            "other seed: max"]
    body = [[f"{r['snr']:g}", r["parameter"], f"{r['bf16_median']:.4f}", f"{r['bf16_max']:.4f}",
             f"{r['mc_median']:.4f}", f"{r['mc_max']:.4f}"] for r in rows]
    lines = [".. generated by python scripts/precision_check.py --rst ...; do not edit.", "",
             f"{head}. Shifts of the 16, 50 and 84 % quantiles from float32 (seed A), in units "
             "of each spectrum's posterior sigma: bfloat16 with the same latent draws, and "
             "float32 with other draws (the Monte-Carlo error).", "",
             simple_table(cols, body, pad_last_column=True), ""]
    for snr, (a, b, _c) in times.items():
        lines.append(f"Wall time at S/N {snr:g}: float32 {a:.1f} s, bfloat16 {b:.1f} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
