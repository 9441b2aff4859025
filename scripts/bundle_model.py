"""Ship a trained model inside the package and pin it in the registry.

Copies ``<model_dir>/{metadata.json,weights.safetensors}`` (and ``emulator.safetensors`` if the
model has an emulator) to
``specutils_cinn/data/models/<name>-v<version>/`` byte for byte, writes the registry entry
(file names with the version, SHA-256 of both files, ``bundled``) into
``specutils_cinn/data/registry.json`` and points the alias at it. Also writes the two release
assets ``<name>-v<version>.json``, ``.safetensors`` (and ``.emulator.safetensors``) into
``--assets`` for upload.

Usage::

    python scripts/bundle_model.py work/models/4most-hr-lte-seed --alias 4most-hr
    python scripts/bundle_model.py work/models/4most-hr-lte-v1.2.0 --alias 4most-hr \
        --replaces 4most-hr-lte-v1.1.0
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from specutils_cinn.model import DATA_DIR, EMULATOR_FILENAME, CINNModel, make_registry_entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--alias", action="append", default=[])
    ap.add_argument("--assets", default="work/release-assets")
    ap.add_argument("--replaces", action="append", default=[],
                    help="registry entry (name-vVERSION) no longer bundled: its folder is "
                         "removed, the entry stays downloadable")
    args = ap.parse_args()
    model = CINNModel.load(args.model_dir)
    full = model.metadata.full_name
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp, registry_names=True)
        assets = Path(args.assets)
        assets.mkdir(parents=True, exist_ok=True)
        for f in Path(tmp).iterdir():
            shutil.copy2(f, assets / f.name)
        entry = make_registry_entry(Path(tmp) / f"{full}.json", bundled=True)
        target = DATA_DIR / "models" / full
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / f"{full}.json", target / "metadata.json")
        shutil.copyfile(Path(tmp) / f"{full}.safetensors", target / "weights.safetensors")
        emulator = Path(tmp) / f"{full}.emulator.safetensors"
        if emulator.is_file():  # optional goodness-of-fit emulator
            shutil.copyfile(emulator, target / EMULATOR_FILENAME)
    reg_path = DATA_DIR / "registry.json"
    reg = json.loads(reg_path.read_text())
    reg["models"].update(entry)
    for alias in args.alias:
        reg["aliases"][alias] = full
    for old in args.replaces:
        if old not in reg["models"]:
            raise SystemExit(f"--replaces {old}: no such registry entry")
        reg["models"][old]["bundled"] = None
        shutil.rmtree(DATA_DIR / "models" / old, ignore_errors=True)
    reg_path.write_text(json.dumps(reg, indent=2) + "\n")
    size = (target / "weights.safetensors").stat().st_size
    print(f"bundled {full} ({size / 1e6:.2f} MB weights) -> {target}; aliases {args.alias}")


if __name__ == "__main__":
    main()
