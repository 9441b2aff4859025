"""Tests of the GLOW coupling block and its subnets (FrEIA 0.2 semantics)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from specutils_cinn.flows import (
    GLOWCouplingBlock,
    MLPSubnet,
    make_subnet,
    soft_clamp,
)


def randomize_(module: nn.Module, seed: int, std: float = 0.3) -> None:
    """Overwrite all floating parameters with N(0, std) values (deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


def make_block(dims_in: int, dims_c: int, *, seed: int = 0, dtype=torch.float32, clamp=2.0):
    torch.manual_seed(seed)
    block = GLOWCouplingBlock(dims_in, dims_c, MLPSubnet(16, 2), clamp=clamp).to(dtype)
    randomize_(block, seed)
    return block


def freia_glow_reference(block: GLOWCouplingBlock, x, c, rev=False):
    """Hand transcription of FrEIA 0.2 ``_BaseCouplingBlock.forward`` + ``GLOWCouplingBlock``.

    Written independently of the package code, using the block's subnets only.
    """
    channels = x.shape[1]
    split_len1 = channels // 2
    split_len2 = channels - split_len1
    clamp = block.clamp

    def f_clamp(u):
        return 0.636 * torch.atan(u)

    def _coupling1(x1, u2, rev=False):
        a2 = block.subnet2(u2)
        s2, t2 = a2[:, :split_len1], a2[:, split_len1:]
        s2 = clamp * f_clamp(s2)
        j1 = torch.sum(s2, dim=tuple(range(1, 2)))
        if rev:
            return (x1 - t2) * torch.exp(-s2), -j1
        return torch.exp(s2) * x1 + t2, j1

    def _coupling2(x2, u1, rev=False):
        a1 = block.subnet1(u1)
        s1, t1 = a1[:, :split_len2], a1[:, split_len2:]
        s1 = clamp * f_clamp(s1)
        j2 = torch.sum(s1, dim=tuple(range(1, 2)))
        if rev:
            return (x2 - t1) * torch.exp(-s1), -j2
        return torch.exp(s1) * x2 + t1, j2

    x1, x2 = torch.split(x, [split_len1, split_len2], dim=1)
    if not rev:
        y1, j1 = _coupling1(x1, torch.cat([x2, c], 1))
        y2, j2 = _coupling2(x2, torch.cat([y1, c], 1))
    else:
        y2, j2 = _coupling2(x2, torch.cat([x1, c], 1), rev=True)
        y1, j1 = _coupling1(x1, torch.cat([y2, c], 1), rev=True)
    return torch.cat((y1, y2), 1), j1 + j2


def test_make_subnet_structure_and_zero_last_layer():
    net = make_subnet(5, 6, hidden=8, n_layers=3)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU"] * 3 + ["Linear"]
    names = [k for k, _ in net.named_parameters()]
    assert names == [f"{i}.{w}" for i in (0, 2, 4, 6) for w in ("weight", "bias")]
    assert net[0].in_features == 5 and net[-1].out_features == 6
    assert torch.count_nonzero(net[-1].weight) == 0 and torch.count_nonzero(net[-1].bias) == 0
    assert torch.count_nonzero(net[0].weight) > 0
    assert isinstance(MLPSubnet(8, 1)(3, 4), nn.Sequential)


@pytest.mark.parametrize(
    "kwargs",
    [{"hidden": 0, "n_layers": 1}, {"hidden": 4, "n_layers": 0}, {"hidden": 2.5, "n_layers": 1}],
)
def test_subnet_bad_sizes(kwargs):
    with pytest.raises(ValueError, match="must be a positive integer"):
        MLPSubnet(**kwargs)


def test_freia_parameter_names_and_shapes():
    block = GLOWCouplingBlock(5, 3, MLPSubnet(16, 2))
    assert block.split_len1 == 2 and block.split_len2 == 3
    sd = block.state_dict()
    assert "subnet1.0.weight" in sd and "subnet2.4.bias" in sd
    # subnet1 sees [x1 or y1 (split_len1), c] and predicts (s, t) for the second half
    assert sd["subnet1.0.weight"].shape == (16, 2 + 3)
    assert sd["subnet1.4.weight"].shape == (2 * 3, 16)
    assert sd["subnet2.0.weight"].shape == (16, 3 + 3)
    assert sd["subnet2.4.weight"].shape == (2 * 2, 16)


def test_fresh_block_is_identity():
    block = GLOWCouplingBlock(4, 2, MLPSubnet(8, 1))
    x, c = torch.randn(6, 4), torch.randn(6, 2)
    y, log_det = block(x, c)
    assert torch.equal(y, x)
    assert torch.equal(log_det, torch.zeros(6))


@pytest.mark.parametrize("dims_in", [2, 5, 6])
def test_matches_freia_reference(dims_in):
    block = make_block(dims_in, 3, seed=dims_in, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, dims_in, generator=gen, dtype=torch.float64)
    c = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    y_ref, j_ref = freia_glow_reference(block, x, c)
    y, log_det = block(x, c)
    assert not torch.allclose(y, x, atol=1e-3)  # the block really transforms
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_det, j_ref, rtol=1e-12, atol=1e-12)
    x_ref, j_rev = freia_glow_reference(block, y, c, rev=True)
    torch.testing.assert_close(block.reverse(y, c), x_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(j_rev, -log_det, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dims_in", [2, 3, 8])
def test_invertibility(dims_in):
    block = make_block(dims_in, 4, seed=3)
    x, c = torch.randn(32, dims_in), torch.randn(32, 4)
    y, _ = block(x, c)
    torch.testing.assert_close(block.reverse(y, c), x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(block(block.reverse(x, c), c)[0], x, rtol=1e-5, atol=1e-5)


def test_log_det_matches_autograd_jacobian():
    block = make_block(5, 3, seed=11, dtype=torch.float64, clamp=1.5)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    c = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    _, log_det = block(x, c)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(
            lambda v, i=i: block(v[None], c[i : i + 1])[0][0], x[i]
        )
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign > 0
        torch.testing.assert_close(log_det[i], logabs, rtol=1e-10, atol=1e-10)
    assert log_det.abs().max() > 0.1  # a non-trivial test


def test_soft_clamp_matches_freia_atan():
    raw = torch.linspace(-1e4, 1e4, 1001, dtype=torch.float64)
    out = soft_clamp(raw, 2.0)
    torch.testing.assert_close(out, 2.0 * 0.636 * torch.atan(raw))
    assert out.abs().max() < 2.0
    block = make_block(4, 2, seed=5, clamp=0.5)
    with torch.no_grad():
        block.subnet1[-1].bias.fill_(1e3)
        block.subnet2[-1].bias.fill_(1e3)
    _, log_det = block(torch.randn(3, 4), torch.randn(3, 2))
    assert torch.all(log_det <= 4 * 0.5 * 0.636 * math.pi / 2 + 1e-5)


@pytest.mark.parametrize("dims_in", [3, 6])
def test_precondition_path_equals_plain_reverse(dims_in):
    block = make_block(dims_in, 5, seed=7)
    batch, n_draws = 4, 9
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(batch, n_draws, dims_in, generator=gen)
    c = torch.randn(batch, 5, generator=gen)
    cache = block.precondition(c)
    assert cache.subnet1.term.shape == (batch, 16)
    assert cache.subnet2.weight.shape == (16, dims_in - dims_in // 2)
    fast = block.reverse_conditioned(z, cache)
    plain = block.reverse(z.reshape(-1, dims_in), c.repeat_interleave(n_draws, dim=0))
    assert fast.shape == (batch, n_draws, dims_in)
    torch.testing.assert_close(fast, plain.reshape(batch, n_draws, dims_in), rtol=1e-5, atol=1e-5)


def test_precondition_fallback_for_generic_subnets():
    class Wrapped(nn.Module):
        def __init__(self, dims_in, dims_out):
            super().__init__()
            self.inner = make_subnet(dims_in, dims_out, 8, 1)

        def forward(self, x):
            return self.inner(x)

    block = GLOWCouplingBlock(4, 2, Wrapped)
    randomize_(block, 9)
    z, c = torch.randn(3, 5, 4), torch.randn(3, 2)
    cache = block.precondition(c)
    assert cache.subnet1.weight is None
    plain = block.reverse(z.reshape(-1, 4), c.repeat_interleave(5, dim=0)).reshape(3, 5, 4)
    torch.testing.assert_close(block.reverse_conditioned(z, cache), plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "match"),
    [((1, 2), "dims_in"), ((4, 0), "dims_c"), ((True, 2), "dims_in")],
)
def test_bad_block_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        GLOWCouplingBlock(*args, MLPSubnet(4, 1))


@pytest.mark.parametrize("clamp", [0.0, -1.0, float("inf"), "2"])
def test_bad_clamp(clamp):
    with pytest.raises(ValueError, match="clamp"):
        GLOWCouplingBlock(4, 2, MLPSubnet(4, 1), clamp=clamp)


def test_shape_errors():
    block = GLOWCouplingBlock(4, 2, MLPSubnet(4, 1))
    with pytest.raises(ValueError, match=r"x must have shape \[B, 4\]"):
        block(torch.zeros(3, 5), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="c must have shape"):
        block(torch.zeros(3, 4), torch.zeros(2, 2))
    cache = block.precondition(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="z must have shape"):
        block.reverse_conditioned(torch.zeros(2, 5, 4), cache)
