"""Describe a folder of grid shards as a data product in the package registry.

Hashes every ``shard_NNNNN.h5`` of the folder and writes (or replaces) its entry under
``"grids"`` in ``specutils_cinn/data/registry.json``; users then get the grid with
``specutils_cinn.synthesis.shards.fetch_grid(name)`` (verified downloads, as for the models).
Upload the shards to the base URL before releasing.

Usage::

    python scripts/register_grid.py grid/4most-lte-v2 --name 4most-lte-v2 --version 2.0.0 \\
        --description "..." [--base-url URL] [--registry specutils_cinn/data/registry.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from specutils_cinn.model import DATA_DIR, Registry
from specutils_cinn.synthesis.shards import grid_product

DEFAULT_URL = ("https://github.com/specutils-cinn/specutils-cinn-grids/releases/download/"
               "{full_name}/")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--description", required=True)
    ap.add_argument("--base-url", default=DEFAULT_URL)
    ap.add_argument("--registry", type=Path, default=Path(DATA_DIR) / "registry.json")
    args = ap.parse_args()
    product = grid_product(args.folder, name=args.name, version=args.version,
                           description=args.description, base_url=args.base_url)
    reg = Registry.read(args.registry)
    grids = dict(reg.grids)
    grids[product.full_name] = product.to_dict()
    out = Registry(reg.models, reg.aliases, reg.base_url, grids).to_dict()
    args.registry.write_text(json.dumps(out, indent=1) + "\n")
    size = sum(f.size for f in product.files)
    print(f"registered {product.full_name}: {len(product.files)} shards, {size / 1e6:.1f} MB "
          f"in {args.registry}")


if __name__ == "__main__":
    main()
