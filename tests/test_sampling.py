"""Per-spectrum random streams and the batched draws of specutils_cinn.sampling."""

import dataclasses

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn.flags import QualityFlag
from specutils_cinn.inputs import prepare_spectra
from specutils_cinn.options import PredictionOptions
from specutils_cinn.sampling import (
    ROWS_PER_BATCH,
    default_batch_size,
    draw_batches,
    inferred_rows,
    row_seeds,
)


@pytest.fixture(scope="module")
def prepared(linear_gaussian_model):
    prob, model = linear_gaussian_model
    y, _ = prob.observations(n=4, seed=8)
    y[3] = y[1]  # a repeated spectrum
    spectrum = Spectrum(flux=y * u.one, spectral_axis=prob.grid.wavelength,
                        uncertainty=StdDevUncertainty(np.full(y.shape, prob.sigma)))
    return model, prepare_spectra(spectrum, model.metadata.grid, normalize=False)


def test_default_batch_size_bounds_the_rows_per_call():
    assert default_batch_size(1000) == ROWS_PER_BATCH // 1000
    assert default_batch_size(2) == 4096
    assert default_batch_size(10 * ROWS_PER_BATCH) == 1


def test_inferred_rows_leave_out_hopeless_rows(prepared):
    _, p = prepared
    assert inferred_rows(p).all()
    flags = p.flags.copy()
    flags[0] |= QualityFlag.NO_OVERLAP
    flags[1] |= QualityFlag.NO_VALID_DATA
    coverage = p.coverage.copy()
    coverage[2] = 0.0
    bad = dataclasses.replace(p, flags=flags, coverage=coverage)
    assert inferred_rows(bad).tolist() == [False, False, False, True]


@pytest.mark.parametrize("known_hash", [True, False])
def test_row_seeds_follow_the_seed_and_the_content(prepared, known_hash):
    _, p = prepared
    if not known_hash:  # hashed from the prepared arrays instead
        p = dataclasses.replace(p, content_hash=None)
    seeds = row_seeds(5, p)
    assert seeds.dtype == np.int64 and np.all(seeds >= 0)
    assert seeds[1] == seeds[3] and len(set(seeds[:3].tolist())) == 3  # same spectrum, same
    assert np.array_equal(row_seeds(5, p), seeds)
    assert not np.any(row_seeds(6, p) == seeds)
    # a row's seed does not depend on the other rows
    assert np.array_equal(row_seeds(5, _rows(p, [2, 0]))[[1, 0]], seeds[[0, 2]])


def _rows(p, rows):
    def take(a):
        return a[rows] if isinstance(a, np.ndarray) and a.ndim and len(a) == p.n_rows else a

    return dataclasses.replace(p, **{f.name: take(getattr(p, f.name))
                                     for f in dataclasses.fields(p)
                                     if f.name not in ("grid", "source_index")},
                               source_index=tuple(p.source_index[i] for i in rows))


def test_draws_do_not_depend_on_the_batch_size(prepared):
    model, p = prepared
    opts = PredictionOptions(n_samples=20, seed=11, progress=False)
    whole = list(draw_batches(model, p, opts, torch.device("cpu")))
    assert [rows.tolist() for rows, _ in whole] == [[0, 1, 2, 3]]
    one = whole[0][1]
    assert one.shape == (4, 20, 2)
    calls = []
    small = dataclasses.replace(opts, batch_size=3, progress=lambda d, t: calls.append((d, t)))
    batches = list(draw_batches(model, p, small, torch.device("cpu")))
    assert [rows.tolist() for rows, _ in batches] == [[0, 1, 2], [3]]
    assert calls == [(3, 4), (4, 4)]
    for rows, draws in batches:
        assert torch.allclose(draws, one[rows], atol=1e-5)
    assert torch.equal(one[1], one[3])  # identical spectra, identical draws


def test_draws_need_a_fixed_seed(prepared):
    model, p = prepared
    with pytest.raises(ValueError, match="seed"):
        next(draw_batches(model, p, PredictionOptions(), torch.device("cpu")))
