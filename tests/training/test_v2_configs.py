"""The draft v2 training configurations (GitHub issue 12) parse, name existing masks, and
build networks for the v2 grids whose weights stay well under 20 MB."""

from pathlib import Path

import pytest

from specutils_cinn.flows import build_cinn
from specutils_cinn.inputs import PixelMask
from specutils_cinn.instruments import fourmost_setup
from specutils_cinn.training import resolve_line_windows
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
    arch = resolve_line_windows({**cfg.architecture, "n_params": len(cfg.simulator["parameters"]),
                                 "npix": grid.npix}, grid)
    net = build_cinn(arch)
    lines = cfg.architecture["conditioner"].get("lines")
    if lines is not None:       # every line window holds pixels of the native grid
        half = cfg.architecture["conditioner"].get("line_half_width", 0.4)
        step = float(grid.pixel_width.min())
        assert all(grid.pixels_within([c], half).size >= round(2 * half / step) - 1 for c in lines)
    init = cfg.training.init_weights
    if init is not None:        # a start from another model: it is in the repository
        assert (cfg.base / init / "weights.safetensors").is_file()
    megabytes = sum(p.numel() * p.element_size() for p in net.state_dict().values()) / 1e6
    assert megabytes < 15.0, megabytes
    # the pooled CNN keeps at most ~1 position per 64 pixels (no position averages many)
    assert cfg.architecture["conditioner"]["pool"] * 64 * 2 >= grid.npix


@pytest.mark.parametrize("setup", ["hr", "lr"])
def test_v2_emulator_config_windows_the_li_lines_and_stays_small(setup):
    """The v2 emulators (``kind = "gp"``): the Li-line windows hold pixels of the native grid,
    and the file for the whole v2 design (its training stars) stays well under 20 MB."""
    import tomllib

    import numpy as np

    from specutils_cinn.emulator import EMULATOR_LABELS, EmulatorConfig
    from specutils_cinn.emulator.pipeline import read_emulator_config

    path = CONFIGS / f"emulator-4most-{setup}-v2.toml"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    cfg = EmulatorConfig.from_dict(read_emulator_config(path)["emulator"])
    assert cfg.kind == "gp"
    wave = fourmost_setup(setup).grid.wavelength.value
    lines = [6103.6, 6707.8] + ([8126.3] if setup == "lr" else [])
    for line in lines:
        (window,) = [w for w in cfg.gp_windows if w[0] < line < w[1]]
        assert np.count_nonzero((wave >= window[0]) & (wave <= window[1])) >= 10
    design = tomllib.loads((CONFIGS / "grid-4most-lte-v2.toml").read_text())["grid"]["n_stars"]
    n_train = int(design * 0.9 * (1 - cfg.validation_fraction))   # held out: one star in ten
    n_comp = cfg.n_components + cfg.gp_window_components * len(cfg.gp_windows)
    megabytes = (n_comp * wave.size * 2 + n_train * (len(EMULATOR_LABELS) + n_comp) * 8) / 1e6
    assert megabytes < 16.0, megabytes
