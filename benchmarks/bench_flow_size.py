"""Sampling speed of the cINN against the size of its flow, for choosing a model's architecture.

At 1000 draws per spectrum nearly all of ``predict``'s time is the reverse pass of the flow,
1000 times per spectrum; the conditioning network runs once per spectrum. This benchmark times
both for the architecture of a training configuration (the baseline, e.g. the v2 HR model's)
and for variants of its flow (coupling blocks x subnet width x subnet layers) with the same
conditioning network, on spectra of the configuration's length. The weights are freshly
initialized: the arithmetic, and so the time, does not depend on their values. What a smaller
flow costs in accuracy is not measured here; that needs training (docs/training.rst).

Usage::

    python benchmarks/bench_flow_size.py --config configs/4most-hr-lte-v2.toml \\
        --variants 8x96x2 8x64x2 6x128x2 8x128x1 --rst docs/models/bench_flow_size.rst
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

from specutils_cinn.flows.cinn import build_cinn
from specutils_cinn.training.config import read_training_file
from specutils_cinn.validation.rst import simple_table


def _load() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return "unknown"


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def parse_variant(text: str) -> tuple[int, int, int]:
    """``"8x96x2"`` -> (8 blocks, subnet width 96, 2 subnet layers)."""
    try:
        blocks, width, layers = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"variant {text!r} is not BLOCKSxWIDTHxLAYERS") from exc
    if min(blocks, width, layers) < 1:
        raise argparse.ArgumentTypeError(f"variant {text!r} needs positive numbers")
    return blocks, width, layers


def time_architecture(arch: dict, n_spectra: int, draws: int, repeat: int) -> dict:
    """Seconds to condition ``n_spectra`` spectra and to draw ``draws`` for each."""
    torch.manual_seed(0)
    net = build_cinn(arch).eval()
    spectra = torch.randn(n_spectra, 3, arch["npix"])    # flux, error, mask channels
    with torch.inference_mode():
        features = net.condition(spectra)
        net.sample(features[:8], 50)                       # warm-up
        t_cond = _best(lambda: net.condition(spectra), repeat)
        t_draw = _best(lambda: net.sample(features, draws), repeat)
    n_flow = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("conditioner"))
    return {"blocks": arch["n_blocks"], "width": arch["subnet_hidden"],
            "layers": arch["subnet_layers"], "flow_weights": n_flow, "condition_s": t_cond,
            "draw_s": t_draw}


def table(rows: list[dict], n_spectra: int, draws: int) -> str:
    """reStructuredText simple table; the first row is the baseline."""
    base = rows[0]["condition_s"] + rows[0]["draw_s"]
    head = ["flow (blocks x width x layers)", "flow weights", "condition /s",
            f"{draws} draws /s", "both /s", "x baseline"]
    body = []
    for i, r in enumerate(rows):
        both = r["condition_s"] + r["draw_s"]
        name = f"{r['blocks']} x {r['width']} x {r['layers']}" + (" (baseline)" if i == 0 else "")
        body.append([name, f"{r['flow_weights']:,}", f"{n_spectra / r['condition_s']:.0f}",
                     f"{n_spectra / r['draw_s']:.1f}", f"{n_spectra / both:.1f}",
                     f"{base / both:.2f}"])
    return simple_table(head, body)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="training configuration (its architecture "
                    "is the baseline; its conditioner is kept for the variants)")
    ap.add_argument("--npix", type=int, default=None,
                    help="pixels per spectrum (default 33783, the v2 HR model; 23201 for v2 LR)")
    ap.add_argument("--variants", nargs="+", type=parse_variant, default=[],
                    metavar="BLOCKSxWIDTHxLAYERS")
    ap.add_argument("--n-spectra", type=int, default=256)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--rst", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.rst is not None and not args.rst.parent.is_dir():
        ap.error(f"the folder of --rst {args.rst} does not exist")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = read_training_file(args.config)
    npix = args.npix or 33783
    n_params = len(cfg.simulator["parameters"]) if cfg.simulator else 11
    base = dict(cfg.architecture, n_params=n_params, npix=npix,
                permutation_seed=cfg.architecture.get("permutation_seed", 0))
    archs = [base] + [dict(base, n_blocks=b, subnet_hidden=w, subnet_layers=la)
                      for b, w, la in args.variants]
    hw = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads")
    load_before = _load()
    rows = []
    for a in archs:
        rows.append(time_architecture(a, args.n_spectra, args.draws, args.repeat))
        r = rows[-1]
        print(f"{r['blocks']}x{r['width']}x{r['layers']}: condition "
              f"{args.n_spectra / r['condition_s']:.0f}/s, {args.draws} draws "
              f"{args.n_spectra / r['draw_s']:.1f}/s", flush=True)
    text = table(rows, args.n_spectra, args.draws)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    caption = (f"Measured {date}: {args.n_spectra} spectra of {npix} pixels, {args.draws} "
               f"draws each, best of {args.repeat}; CPU ({hw}); torch {torch.__version__}; "
               f"load average (1, 5, 15 min) {load_before} before, {_load()} after.")
    print(text + "\n\n" + caption)
    if args.rst is not None:
        header = (f".. generated by python benchmarks/bench_flow_size.py "
                  f"{' '.join(sys.argv[1:] if argv is None else argv)}; do not edit.")
        args.rst.write_text(f"{header}\n\n{text}\n\n{caption}\n")
        print(f"wrote {args.rst}")


if __name__ == "__main__":
    main()
