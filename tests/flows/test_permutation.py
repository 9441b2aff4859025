"""Tests of the fixed random permutation (FrEIA 0.2 ``PermuteRandom`` layout)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specutils_cinn.flows import PermuteRandom


def test_buffers_and_names():
    perm = PermuteRandom(7, seed=3)
    sd = perm.state_dict()
    assert list(sd) == ["perm", "perm_inv"]
    assert sd["perm"].dtype == torch.int64 and sd["perm_inv"].dtype == torch.int64
    assert sorted(sd["perm"].tolist()) == list(range(7))
    assert list(perm.parameters()) == []
    # FrEIA computes the inverse with a loop: perm_inv[perm[i]] = i
    inv = np.zeros(7, dtype=np.int64)
    for i, p in enumerate(sd["perm"].tolist()):
        inv[p] = i
    assert sd["perm_inv"].tolist() == inv.tolist()


def test_forward_permutes_and_reverse_inverts():
    perm = PermuteRandom(6, seed=0)
    x = torch.arange(12.0).reshape(2, 6)
    y, log_det = perm(x)
    assert torch.equal(y, x[:, perm.perm])
    assert not torch.equal(y, x)
    assert torch.equal(log_det, torch.zeros(2))
    assert torch.equal(perm.reverse(y), x)
    z = torch.randn(2, 3, 6)
    assert torch.equal(perm.reverse_conditioned(perm(z)[0], perm.precondition(z)), z)


def test_seed_determinism_and_local_rng():
    state = np.random.get_state()  # noqa: NPY002 (checks it stays untouched)
    torch_state = torch.get_rng_state()
    a, b, c = PermuteRandom(20, 5), PermuteRandom(20, 5), PermuteRandom(20, 6)
    after = np.random.get_state()  # noqa: NPY002
    assert np.array_equal(state[1], after[1]) and state[2:] == after[2:]
    assert torch.equal(torch_state, torch.get_rng_state())
    assert torch.equal(a.perm, b.perm)
    assert not torch.equal(a.perm, c.perm)
    assert a.perm.tolist() == np.random.default_rng(5).permutation(20).tolist()


def test_state_dict_defines_permutation():
    src, dst = PermuteRandom(9, 1), PermuteRandom(9, 2)
    dst.load_state_dict(src.state_dict())
    x = torch.randn(3, 9)
    assert torch.equal(dst(x)[0], src(x)[0])


@pytest.mark.parametrize(("dims", "seed"), [(0, 1), (3, -1), (2.0, 1), (3, 1.5)])
def test_bad_arguments(dims, seed):
    with pytest.raises(ValueError, match="dims_in|seed"):
        PermuteRandom(dims, seed)
