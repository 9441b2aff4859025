"""Make the small trained cINN the tests use, committed under ``tests/data/linear-gaussian-model/``.

Trains the recipe of ``tests/linear_gaussian.py`` (`train_test_model`: a 4-block cINN on the
linear-Gaussian problem whose posterior is known exactly, 2500 steps, seed 0) on one CPU thread,
about 25 s, and writes, through `CINNModel.save` (safetensors, no pickle):

- ``metadata.json`` (with the weights' SHA-256 and the training configuration),
- ``weights.safetensors`` (about 130 kB),
- ``sha256.json``: the SHA-256 of both files and the model digest, which
  tests/test_training.py checks with ``CINNModel.load(..., expected_sha256=...)``.

The weights are the same on every run with the same torch version (one thread, fixed seeds);
the metadata records the date and the package and torch versions. ``--check`` trains into a
temporary folder instead and says whether the weights equal the committed ones.

Run it after changing the training code, the flows or the recipe (the default test run loads the
committed model; the ``slow`` test ``test_training_recovers_the_exact_posterior_end_to_end``
trains it afresh)::

    python scripts/make_test_model.py            # rewrite tests/data/linear-gaussian-model
    python scripts/make_test_model.py --check    # compare a fresh training with it
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from linear_gaussian import MODEL_DIR, train_test_model  # noqa: E402

from specutils_cinn.model import CINNModel, sha256_file  # noqa: E402

HASHES = "sha256.json"


def write_model(directory: Path) -> dict[str, str]:
    """Train the test model on one thread, save it to ``directory`` and return its hashes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = train_test_model()
    finally:
        torch.set_num_threads(threads)
    directory.mkdir(parents=True, exist_ok=True)
    meta_path = model.save(directory)
    hashes = {
        "metadata": sha256_file(meta_path),
        "weights": model.sha256,
        "digest": model.digest,
    }
    (directory / HASHES).write_text(json.dumps(hashes, indent=2) + "\n")
    # what the tests do: load with the safe loader, every file verified
    CINNModel.load(directory, expected_sha256={k: hashes[k] for k in ("metadata", "weights")})
    return hashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=MODEL_DIR,
                        help=f"folder to write (default {MODEL_DIR})")
    parser.add_argument("--check", action="store_true",
                        help="train into a temporary folder and compare the weights with the "
                             "committed ones; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        committed = json.loads((MODEL_DIR / HASHES).read_text())
        with tempfile.TemporaryDirectory() as tmp:
            fresh = write_model(Path(tmp))
        same = fresh["weights"] == committed["weights"]
        print(f"committed weights {committed['weights']}\nfresh weights     {fresh['weights']}\n"
              + ("the same" if same else "DIFFERENT (another torch version or code change?)"))
        return 0 if same else 1
    hashes = write_model(args.output)
    for name in ("metadata.json", "weights.safetensors", HASHES):
        print(f"{args.output / name}: {(args.output / name).stat().st_size:,} bytes")
    print(f"digest {hashes['digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
