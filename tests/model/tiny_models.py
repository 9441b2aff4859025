"""Small models for the tests of specutils_cinn.model: a 2-parameter cINN on a 32-pixel grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from specutils_cinn.flows import build_cinn
from specutils_cinn.model import CINNModel, ModelMetadata, ParameterSpec
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

NPIX = 32


def tiny_architecture(**changes: Any) -> dict[str, Any]:
    arch = {
        "n_params": 2,
        "npix": NPIX,
        "conditioner": {"kind": "mlp", "channels": [4], "features": 8, "pool": 1, "hidden": 16},
        "n_blocks": 2,
        "subnet_hidden": 16,
        "subnet_layers": 1,
        "clamp": 2.0,
        "permutation_seed": 3,
    }
    arch.update(changes)
    return arch


def tiny_grid() -> WavelengthGrid:
    return WavelengthGrid((GridSegment("A", 5000.0, 5000.0 + NPIX - 1, 1.0),), "air")


def tiny_metadata(**changes: Any) -> ModelMetadata:
    kwargs: dict[str, Any] = {
        "name": "tiny-test",
        "version": "0.1.0",
        "description": "a tiny test model",
        "parameters": (
            ParameterSpec("teff", "K", (4000.0, 7000.0), 5500.0, 800.0),
            ParameterSpec("logg", "dex(cm / s2)", (0.0, 5.0), 3.0, 1.2),
        ),
        "architecture": tiny_architecture(),
        "grid": tiny_grid(),
        "resolving_power": 20000.0,
        "normalization": {"kind": "continuum", "degree": 3},
        "snr_range": (10.0, 300.0),
        "training": {"seed": 1, "n_train": 10},
    }
    kwargs.update(changes)
    return ModelMetadata(**kwargs)


def tiny_network(seed: int = 0, **arch_changes: Any) -> torch.nn.Module:
    net = build_cinn(tiny_architecture(**arch_changes))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random weights, so that the last layers are not all zero
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return net.eval()


def tiny_model(seed: int = 0) -> CINNModel:
    return CINNModel(tiny_metadata(), tiny_network(seed))


def tiny_emulator(extra_pixels: int = 2) -> Any:
    """Emulator of teff, logg, fe_h on the tiny grid plus pixels the model does not have."""
    from specutils_cinn.emulator import SpectrumEmulator

    grid = WavelengthGrid((GridSegment("E", 5000.0 - extra_pixels, 5000.0 + NPIX - 1, 1.0),))
    torch.manual_seed(0)
    return SpectrumEmulator(["teff", "logg", "fe_h"], [[4000, 7000], [0, 5], [-2, 0.5]], grid,
                            n_components=3, hidden=[8])


def with_emulator(model: CINNModel) -> CINNModel:
    emu = tiny_emulator()
    floor = np.linspace(0.001, 0.01, emu.grid.npix)
    return model.attach_emulator(emu, floor, chi2_threshold=4.0, label_defaults={"fe_h": -0.5},
                                 exclude=[(5003.0, 5004.0)], info={"note": "test"})



def constant_emulator(grid: WavelengthGrid, flux: np.ndarray) -> Any:
    """A one-label (Teff) spectrum emulator whose spectrum is ``flux`` at every label."""
    from specutils_cinn.emulator import SpectrumEmulator

    emu = SpectrumEmulator(["teff"], [[4000.0, 7000.0]], grid, n_components=1, hidden=[])
    with torch.no_grad():
        emu.mlp[0].weight.zero_()
        emu.mlp[0].bias.zero_()
        emu.flux_mean.copy_(torch.as_tensor(flux, dtype=torch.float32))
    return emu
