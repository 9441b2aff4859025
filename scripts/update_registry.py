"""Record every file's size and each model's digest in ``specutils_cinn/data/registry.json``.

Registry format 2 records, for each model file, its size in bytes next to its SHA-256 (a
download is aborted as soon as more bytes arrive), and for each model its digest
(`specutils_cinn.model.model_digest` of the files' SHA-256). This script fills both in for
every entry, finding each file by its SHA-256 (never by name) among

* the bundled models in ``specutils_cinn/data/models/``,
* the directories given with ``--assets`` (release assets, a download cache), and
* with ``--git``, every blob that ever was under ``specutils_cinn/data/models/`` in the git
  history of this repository (models that were bundled once and published since).

A file that is found nowhere is an error; nothing is written then. Existing sizes are checked
against the files found. Usage::

    python scripts/update_registry.py --git
    python scripts/update_registry.py --assets work/release-assets
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

# The package is imported only once the file is in the current format: importing it reads
# (and refuses) an older registry.
REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "specutils_cinn" / "data"
REGISTRY_FORMAT_VERSION = 2


def _index_dirs(dirs: list[Path]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for d in dirs:
        for path in sorted(d.rglob("*")):
            if path.is_file() and path.suffix in (".json", ".safetensors"):
                sizes[hashlib.sha256(path.read_bytes()).hexdigest()] = path.stat().st_size
    return sizes


def _index_git() -> dict[str, int]:
    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", str(REPO), *args], check=True,
                              capture_output=True).stdout

    blobs = set()
    commits = git("log", "--all", "--format=%H", "--", "specutils_cinn/data/models").split()
    for commit in commits:
        listing = git("ls-tree", "-r", commit.decode(), "specutils_cinn/data/models")
        for line in listing.decode().splitlines():
            meta, _path = line.split("\t", 1)
            _mode, kind, blob = meta.split()
            if kind == "blob":
                blobs.add(blob)
    sizes = {}
    for blob in sorted(blobs):
        data = git("cat-file", "blob", blob)
        sizes[hashlib.sha256(data).hexdigest()] = len(data)
    return sizes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=Path, action="append", default=[],
                    help="directory holding model files (repeatable)")
    ap.add_argument("--git", action="store_true",
                    help="also search the blobs of specutils_cinn/data/models in git history")
    ap.add_argument("--registry", type=Path, default=DATA_DIR / "registry.json")
    args = ap.parse_args()

    sizes = _index_dirs([DATA_DIR / "models", *args.assets])
    if args.git:
        sizes.update(_index_git())
    doc = json.loads(args.registry.read_text())
    missing = []
    for full, entry in doc["models"].items():
        for kind, f in entry["files"].items():
            size = sizes.get(f["sha256"])
            if size is None:
                if "size" not in f:
                    missing.append(f"{full}: {kind} {f['filename']} ({f['sha256']})")
                continue
            if "size" in f and f["size"] != size:
                missing.append(f"{full}: {kind} size {f['size']} recorded, file has {size}")
            f["size"] = size
    if missing:
        print("not found or inconsistent:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    doc["format_version"] = REGISTRY_FORMAT_VERSION
    for entry in doc["models"].values():
        entry.pop("digest", None)  # recomputed below
    old = args.registry.read_text()
    args.registry.write_text(json.dumps(doc, indent=2) + "\n")
    try:
        from specutils_cinn.model import Registry

        reg = Registry.read(args.registry)  # validates; computes each model's digest
    except ValueError as exc:
        args.registry.write_text(old)
        print(f"the result is not a valid registry, nothing changed: {exc}", file=sys.stderr)
        return 1
    args.registry.write_text(json.dumps(reg.to_dict(), indent=2) + "\n")
    models = reg.models
    print(f"wrote {args.registry}: {len(models)} models, format {REGISTRY_FORMAT_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
