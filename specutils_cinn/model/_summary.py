"""The text of ``specutils-cinn models info``: `summary_text` of a model."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cinn_model import CINNModel

__all__ = ["summary_text"]


def summary_text(model: CINNModel) -> str:
    """Describe a model in lines of text: parameters, grid, provenance and training.

    Parameters
    ----------
    model : CINNModel
        The model.

    Returns
    -------
    str
        Several lines of text, as printed by ``specutils-cinn models info``
        (`CINNModel.summary <specutils_cinn.model.CINNModel.summary>`).
    """
    md = model.metadata
    n_weights = sum(p.numel() for p in model.network.parameters())
    lines = [
        f"{md.full_name}: {md.description}",
        f"  weights SHA-256: {model.sha256}",
        f"  model digest (metadata, weights, emulator): {model.digest}",
        f"  source: {model.source}"
        + (f" (verified against the registry entry {model.registry_name})"
           if model.registry_name else ""),
        f"  network: {n_weights:,} parameters, architecture {json.dumps(md.architecture)}",
        "  parameters:",
    ]
    for p, unit, (lo, hi) in zip(md.parameter_names, md.units, md.ranges, strict=True):
        lines.append(f"    {p:<8s} [{unit.to_string()}]  training range {lo:g} .. {hi:g}")
    grid = md.grid
    segs = ", ".join(f"{s.name} {s.start:g}-{s.stop:g} A / {s.step:g} A"
                     for s in grid.segments)
    lines += [
        f"  wavelength grid ({grid.medium}, {grid.npix} px): {segs}",
        f"  resolving power: {json.dumps(md.resolving_power)}",
        f"  normalization: {json.dumps(md.normalization.to_dict())}",
        f"  S/N per Angstrom in training: {md.snr_range[0]:g} .. {md.snr_range[1]:g}",
    ]
    cal = md.posterior_calibration
    if cal is not None:
        parts = [f"{p} {cal.describe(p)}" for p in md.parameter_names if p in cal.parameters]
        lines.append("  posterior calibration (scale (+) floor): " + ", ".join(parts))
    if md.pixel_mask is not None:
        masked = md.masked_pixels
        lines.append(f"  pixel mask: {md.pixel_mask.n_intervals} intervals, "
                     f"{int(masked.sum())} of {grid.npix} px masked "
                     f"({md.pixel_mask.provenance.get('description', 'no description')})")
    tr = md.training or {}
    data = tr.get("data", {})
    if isinstance(data, dict) and data.get("source"):
        lines.append(f"  training data: {data['source']}")
    hist = tr.get("history", {})
    if hist:
        steps = tr.get("config", {}).get("steps", "?")
        lines.append(
            f"  trained {tr.get('date', '?')} on {hist.get('device', '?')}: best step "
            f"{hist.get('best_step', '?')} of {steps}, "
            f"{hist.get('seconds', float('nan')):.0f} s, "
            f"{tr.get('n_train', '?')} training / {tr.get('n_validation', '?')} validation "
            "spectra"
        )
    return "\n".join(lines)
