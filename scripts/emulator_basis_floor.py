"""The accuracy floor of a linear spectral basis: held-out stars projected on training PCs.

A ``kind = "pca"`` emulator (`specutils_cinn.emulator.SpectrumEmulator`) writes every spectrum
as the mean plus ``n_components`` basis spectra. However well its network learns the
coefficients, it cannot do better than the best combination of those components, i.e. the
projection of a held-out Turbospectrum star onto the principal components of the training
stars. This script prints that floor (median and 99th percentile of |projected - true| in
continuum units, over all pixels of the held-out stars ``star_id % 10 == 9``) against the
number of components, overall, per segment and per [Fe/H] bin, for the PCs of the flux and of
its logarithm. The floor falls as the grid grows (more stars span more of the spectra), so
rerun it on each grid size before choosing ``n_components`` for an emulator configuration.

Usage::

    specutils-cinn emulator prepare --shards grid/4most-lte-v2 --setup hr -o work/emu_v2_hr.npz
    python scripts/emulator_basis_floor.py work/emu_v2_hr.npz --components 64 128 256
"""

from __future__ import annotations

import argparse

import numpy as np

from specutils_cinn.emulator.pipeline import load_training_data

TRANSFORMS = {
    "flux": (lambda f: f, lambda y: y),
    "log": (lambda f: np.log(np.clip(f, 1e-3, None)), np.exp),
}


def basis_floor(flux: np.ndarray, holdout: np.ndarray, k: int, transform: str = "flux"
                ) -> np.ndarray:
    """|projected - true| of the held-out spectra on the first ``k`` training PCs.

    Parameters
    ----------
    flux : numpy.ndarray, shape ``[n_stars, n_pixels]``
        Continuum-normalized spectra.
    holdout : numpy.ndarray of bool, shape ``[n_stars]``
        The held-out stars (the others give the components).
    k : int
        Number of components (at most the number of training stars).
    transform : {"flux", "log"}
        Space of the principal components; the error is always in flux.

    Returns
    -------
    numpy.ndarray, shape ``[n_holdout, n_pixels]``
    """
    fwd, inv = TRANSFORMS[transform]
    t = fwd(np.asarray(flux, dtype=np.float64))
    train = t[~holdout]
    if not 0 < k <= train.shape[0]:
        raise ValueError(f"k must be in 1..{train.shape[0]} (the training stars), got {k}")
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    v = vt[:k]
    y = t[holdout] - mean
    return np.abs(inv(mean + (y @ v.T) @ v) - flux[holdout])


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="training data of specutils-cinn emulator prepare (.npz)")
    ap.add_argument("--components", nargs="+", type=int, default=[32, 64, 128, 256])
    ap.add_argument("--fe-h-bins", nargs="+", type=float, default=[-4.0, -2.0, -1.0, 0.6])
    args = ap.parse_args(argv)
    data = load_training_data(args.data)
    flux, ho = np.asarray(data["flux"], np.float64), np.asarray(data["holdout"], bool)
    fe_h = data["labels"][ho][:, list(data["label_names"]).index("fe_h")]
    grid = data["setup"].grid
    edges = sorted(args.fe_h_bins)
    print(f"# {args.data}: {int((~ho).sum())} training stars, {int(ho.sum())} held out, "
          f"{flux.shape[1]} px; |projected - true|, median / 99th percentile")
    head = (["basis", "k", "all"] + [s.name for s in grid.segments]
            + [f"[Fe/H] {a:+.1f}..{b:+.1f}" for a, b in zip(edges[:-1], edges[1:], strict=True)])
    print("  ".join(head))
    for transform in TRANSFORMS:
        for k in args.components:
            if k > int((~ho).sum()):
                continue
            err = basis_floor(flux, ho, k, transform)
            cells = [f"{np.median(err):.1e}/{np.percentile(err, 99):.1e}"]
            cells += [f"{np.median(err[:, sl]):.1e}/{np.percentile(err[:, sl], 99):.1e}"
                      for sl in grid.segment_slices]
            for a, b in zip(edges[:-1], edges[1:], strict=True):
                sel = (fe_h >= a) & (fe_h < b)
                cells.append(f"{np.median(err[sel]):.1e}/{np.percentile(err[sel], 99):.1e}"
                             if sel.any() else "-")
            print("  ".join([transform, str(k), *cells]))


if __name__ == "__main__":
    main()
