"""Which labels do a model's conditioning features carry? A linear probe (docs/training.rst).

Draws ``--spectra`` training spectra from a configuration's simulator (its emulator, prior,
rotation and noise; the augmentation of training at one S/N, without masks or gaps), encodes
them as the model's network sees them, and fits a ridge regression of each label on

- the model's conditioning features (what the normalizing flow is given), and
- those features plus the raw flux at the configuration's line windows
  (``[architecture.conditioner] lines``, `specutils_cinn.training.resolve_line_windows`),

on three quarters of the spectra, reporting R^2 and the rms residual on the rest. A label whose
features give R^2 near 0 while the line pixels give much more is lost in the conditioner, not
absent from the spectra: a linear read of the line pixels already recovers it.

    python scripts/feature_probe.py --model candidates/4most-hr-lte-v2.0.0 \
        --config configs/4most-hr-lte-v2.toml --rst docs/training/feature_probe_hr_v2.0.0.rst
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from specutils_cinn.flows import encode_inputs
from specutils_cinn.inputs.normalization import Normalization
from specutils_cinn.inputs.pixel_mask import PixelMask
from specutils_cinn.model import CINNModel
from specutils_cinn.training import resolve_line_windows
from specutils_cinn.training.augmentation import augment_batch, renormalize_batch
from specutils_cinn.training.config import read_training_file
from specutils_cinn.training.simulation import EmulatorSimulator
from specutils_cinn.validation.rst import simple_table


def ridge_r2(a: np.ndarray, y: np.ndarray, train: np.ndarray, alpha: float = 1e-2
             ) -> tuple[float, float]:
    """R^2 and rms residual on ``~train`` of a ridge fit on ``train`` (standardized columns)."""
    mu, sd = a[train].mean(0), a[train].std(0) + 1e-9
    a = np.hstack([(a - mu) / sd, np.ones((len(a), 1))])
    lam = alpha * train.sum() * np.eye(a.shape[1])
    lam[-1, -1] = 0.0
    w = np.linalg.solve(a[train].T @ a[train] + lam, a[train].T @ y[train])
    res = y[~train] - a[~train] @ w
    return float(1 - res.var() / y[~train].var()), float(res.std())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model directory")
    ap.add_argument("--config", required=True,
                    help="training configuration: simulator and line windows")
    ap.add_argument("--spectra", type=int, default=6000, help="spectra drawn (default 6000)")
    ap.add_argument("--snr", type=float, default=250.0, help="S/N per Angstrom (default 250)")
    ap.add_argument("--seed", type=int, default=123, help="seed (default 123)")
    ap.add_argument("--rst", type=Path, help="write the table here (default: print only)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cfg = read_training_file(args.config)
    sim = EmulatorSimulator.from_config(cfg.simulator or {}, cfg.base)
    model = CINNModel.load(args.model)
    net = model.network.eval()
    if list(model.metadata.parameter_names) != list(sim.parameters):
        raise SystemExit("the model and the configuration have different parameters")
    tc = dataclasses.replace(cfg.training, snr_range=(args.snr, args.snr), masked_fraction=0.0,
                             max_gaps=0, segment_dropout=0.0)
    grid = sim.grid
    norm = Normalization.from_dict(dict(cfg.model.get("normalization") or {}))
    masked = None
    if cfg.model.get("pixel_mask"):
        masked = torch.as_tensor(PixelMask.read(cfg.base / cfg.model["pixel_mask"]).on_grid(grid))
    arch = resolve_line_windows(cfg.architecture, grid)
    lines = arch["conditioner"].get("line_pixels")
    if not lines:
        raise SystemExit(f"{args.config} has no [architecture.conditioner] lines")
    sel = torch.as_tensor(lines)
    pw = torch.as_tensor(grid.pixel_width, dtype=torch.float32)
    seg = torch.as_tensor(grid.segment_index)
    g = torch.Generator().manual_seed(args.seed)
    cond = net.conditioner
    # the two parts of the features: the strided CNN and the line-window branch (added)
    branch = getattr(cond, "line_net", None)
    feats, labels, pixels, cnn_part, line_part = [], [], [], [], []
    with torch.no_grad():
        for i in range(0, args.spectra, 100):
            flux, lab = sim.sample(min(100, args.spectra - i), g)
            noisy = augment_batch(flux.float(), pw, seg, tc, g, masked)
            x = encode_inputs(*renormalize_batch(*noisy, grid, norm))
            feats.append(net.condition(x).numpy())
            if branch is not None:
                cnn_part.append(cond.net(x).numpy())
                line_part.append(branch(x.index_select(2, cond.line_index)).numpy())
            labels.append(lab.numpy())
            pixels.append(x[:, 0].index_select(1, sel).numpy())
    f, lab, px = map(np.concatenate, (feats, labels, pixels))
    train = np.arange(len(f)) < 0.75 * len(f)
    parts = ((np.concatenate(cnn_part), np.concatenate(line_part)) if branch is not None
             else None)
    rows = []
    for j, p in enumerate(sim.parameters):
        a = ridge_r2(f, lab[:, j], train)
        b = ridge_r2(np.hstack([f, px]), lab[:, j], train)
        row = [p, f"{lab[:, j].std():.3g}", f"{a[0]:.2f}", f"{a[1]:.3g}", f"{b[0]:.2f}",
               f"{b[1]:.3g}"]
        if parts is not None:
            row += [f"{ridge_r2(parts[0], lab[:, j], train)[0]:.2f}",
                    f"{ridge_r2(parts[1], lab[:, j], train)[0]:.2f}"]
        rows.append(row)
    md = model.metadata
    head = ["label", "prior sd", "features R2", "features rms", "+ line pixels R2",
            "+ line pixels rms"]
    if parts is not None:
        head += ["CNN part R2", "line branch R2"]
    table = simple_table(head, rows)
    print(table)
    if args.rst:
        cmd = (f"python scripts/feature_probe.py --model {args.model} --config {args.config} "
               f"--rst {args.rst}")
        args.rst.write_text(
            f".. generated by {cmd}; do not edit.\n\n"
            f"{md.name} {md.version}: ridge regression of each label on the conditioning "
            f"features, and on the features plus the raw flux at the {len(lines)} pixels of "
            f"the line windows, {args.spectra} simulated spectra at S/N {args.snr:g} per "
            "Angstrom (fit on 3/4, scored on the rest; rms in label units). The last two "
            "columns probe the two terms the features are the sum of: the strided CNN and the "
            "line-window branch.\n\n" + table)


if __name__ == "__main__":
    main()
