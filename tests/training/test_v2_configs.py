"""The draft v2 training configurations (GitHub issue 12) parse, name existing masks, and
build networks for the v2 grids whose weights stay well under 20 MB."""

from pathlib import Path

import pytest

from specutils_cinn.flows import build_cinn
from specutils_cinn.inputs import PixelMask
from specutils_cinn.instruments import fourmost_setup
from specutils_cinn.training.config import read_training_file

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("setup", ["hr", "lr"])
def test_v2_config_builds_a_small_network(setup):
    path = CONFIGS / f"4most-{setup}-lte-v2.toml"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    cfg = read_training_file(path)
    assert cfg.model["version"].startswith("2.")
    assert "vmacro_range" in cfg.simulator and "segments" not in cfg.simulator
    mask = PixelMask.read(cfg.base / cfg.model["pixel_mask"])
    grid = fourmost_setup(setup).grid        # the v2 emulators' grids: the native 4MOST ones
    assert 0 < mask.on_grid(grid).sum() < 0.1 * grid.npix
    arch = {**cfg.architecture, "n_params": len(cfg.simulator["parameters"]),
            "npix": grid.npix}
    net = build_cinn(arch)
    megabytes = sum(p.numel() * p.element_size() for p in net.state_dict().values()) / 1e6
    assert megabytes < 15.0, megabytes
    # the pooled CNN keeps at most ~1 position per 64 pixels (no position averages many)
    assert cfg.architecture["conditioner"]["pool"] * 64 * 2 >= grid.npix
