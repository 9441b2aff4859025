"""Check a built sdist and wheel: nothing that is work, a grid or a script's output ships.

Usage: ``python scripts/check_dist.py DIST_DIR`` (the folder ``python -m build`` wrote). Prints
each archive's size and file count and exits 1 naming any file that should not be there, or
any file the wheel must have (the package, the bundled models and example) that is missing.
``tox -e release`` runs it between building and installing.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from pathlib import Path

#: Paths that never belong in a distribution (matched against archive member paths).
FORBIDDEN = re.compile(
    r"(^|/)(work|\.tmp|\.tox|\.ci|build|dist|venv|\.venv|__pycache__|docs/_build|docs/api)/"
    r"|\.(log|h5|hdf5|npz|npy|pt|ckpt|part|py[cod])$"
)
#: Files the wheel must contain.
WHEEL_REQUIRED = (
    "specutils_cinn/__init__.py",
    "specutils_cinn/_version.py",
    "specutils_cinn/plotting.py",
    "specutils_cinn/data/registry.json",
    "specutils_cinn/data/sun_4most_hr_example.fits",
)
#: Patterns of which the wheel must contain at least one file each: the bundled models.
WHEEL_REQUIRED_PATTERNS = (
    re.compile(r"^specutils_cinn/data/models/4most-hr-[^/]+/(weights\.safetensors|metadata\.json)$"),
    re.compile(r"^specutils_cinn/data/models/4most-lr-[^/]+/(weights\.safetensors|metadata\.json)$"),
)
#: Top-level folders of the source tree that the wheel must not contain.
WHEEL_FORBIDDEN_TOP = ("tests/", "docs/", "scripts/", "configs/", "benchmarks/")


def _members(path: Path) -> list[str]:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    with tarfile.open(path) as t:
        # drop the leading "<name>-<version>/" folder
        return [m.name.split("/", 1)[1] for m in t.getmembers() if m.isfile() and "/" in m.name]


def check(dist: Path) -> list[str]:
    """Problems found in the archives of ``dist`` (empty if none); prints a summary."""
    problems = []
    archives = sorted(dist.glob("*.whl")) + sorted(dist.glob("*.tar.gz"))
    if not any(a.suffix == ".whl" for a in archives) or not any(
        a.name.endswith(".tar.gz") for a in archives
    ):
        problems.append(f"{dist}: expected one wheel and one sdist, found {archives}")
    for archive in archives:
        names = _members(archive)
        size = archive.stat().st_size
        print(f"{archive.name}: {size / 1e6:.1f} MB, {len(names)} files")
        for name in names:
            if FORBIDDEN.search(name):
                problems.append(f"{archive.name}: must not contain {name}")
        if archive.suffix == ".whl":
            for name in WHEEL_REQUIRED:
                if name not in names:
                    problems.append(f"{archive.name}: missing {name}")
            for pattern in WHEEL_REQUIRED_PATTERNS:
                if not any(pattern.match(name) for name in names):
                    problems.append(f"{archive.name}: no file matching {pattern.pattern}")
            for name in names:
                if name.startswith(WHEEL_FORBIDDEN_TOP):
                    problems.append(f"{archive.name}: must not contain {name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Check the archives in the folder given as the only argument."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(Path(argv[0]))
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
