"""Tests of ConditionalINN: invertibility, densities, sampling and architecture round trip."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import specutils_cinn.flows.cinn as cinn_module
from specutils_cinn.flows import (
    ARCHITECTURE_KEYS,
    CONDITIONER_KEYS,
    CONDITIONER_OPTIONAL_KEYS,
    ConditionalINN,
    SpectrumConditioner,
    auto_chunk_size,
    build_cinn,
)

NPIX = 24
D = 4


def randomize_(module: nn.Module, seed: int, std: float = 0.3) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


def make_model(*, kind="mlp", seed=0, dtype=torch.float32, n_params=D) -> ConditionalINN:
    torch.manual_seed(seed)
    conditioner = SpectrumConditioner(
        NPIX, channels=(4, 8), features=5, kind=kind, pool=2, hidden=12
    )
    model = ConditionalINN(
        n_params,
        conditioner,
        n_blocks=3,
        subnet_hidden=16,
        subnet_layers=2,
        clamp=1.8,
        permutation_seed=10,
    ).to(dtype)
    randomize_(model, seed)
    return model.eval()


def inputs_for(batch: int, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, NPIX, generator=gen, dtype=dtype) * 0.1
    x[:, 2] = 1.0
    return x


def test_state_dict_key_names():
    model = make_model()
    keys = list(model.state_dict())
    assert "flow.module_list.0.subnet1.0.weight" in keys
    assert "flow.module_list.1.perm" in keys
    assert "flow.module_list.1.perm_inv" in keys
    flow_keys = [k for k in keys if k.startswith("flow.")]
    expected = []
    for i in range(3):
        for sub in ("subnet1", "subnet2"):
            expected += [
                f"flow.module_list.{2 * i}.{sub}.{j}.{w}"
                for j in (0, 2, 4)
                for w in ("weight", "bias")
            ]
        expected += [f"flow.module_list.{2 * i + 1}.perm", f"flow.module_list.{2 * i + 1}.perm_inv"]
    assert sorted(flow_keys) == sorted(expected)
    assert all(k.startswith(("flow.", "conditioner.")) for k in keys)
    seeds = [m.seed for m in model.flow.module_list[1::2]]
    assert seeds == [10, 11, 12]


def test_matches_freia_style_sequence_reference():
    """ConditionalINN.forward equals a plain loop of FrEIA-equation blocks."""
    model = make_model(dtype=torch.float64)
    x = torch.randn(6, D, dtype=torch.float64)
    inputs = inputs_for(6, dtype=torch.float64)
    c = model.conditioner(inputs)
    h, jac = x, torch.zeros(6, dtype=torch.float64)
    for block in model.flow.module_list:
        if hasattr(block, "perm"):
            h = h[:, block.perm]
            continue
        n1 = D // 2
        a2 = block.subnet2(torch.cat([h[:, n1:], c], 1))
        s2 = 1.8 * 0.636 * torch.atan(a2[:, :n1])
        y1 = torch.exp(s2) * h[:, :n1] + a2[:, n1:]
        a1 = block.subnet1(torch.cat([y1, c], 1))
        s1 = 1.8 * 0.636 * torch.atan(a1[:, : D - n1])
        y2 = torch.exp(s1) * h[:, n1:] + a1[:, D - n1 :]
        h, jac = torch.cat([y1, y2], 1), jac + s2.sum(1) + s1.sum(1)
    z, log_det = model(x, inputs)
    torch.testing.assert_close(z, h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_det, jac, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_invertibility(kind):
    model = make_model(kind=kind, seed=2)
    x, inputs = torch.randn(16, D), inputs_for(16)
    with torch.no_grad():
        z, _ = model(x, inputs)
        assert not torch.allclose(z, x, atol=1e-2)
        torch.testing.assert_close(model.reverse(z, inputs), x, rtol=1e-4, atol=1e-4)


def test_log_det_matches_autograd_jacobian():
    model = make_model(seed=3, dtype=torch.float64, n_params=5)
    x, inputs = torch.randn(3, 5, dtype=torch.float64), inputs_for(3, dtype=torch.float64)
    _, log_det = model(x, inputs)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(
            lambda v, i=i: model(v[None], inputs[i : i + 1])[0][0], x[i]
        )
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac)[1], rtol=1e-10, atol=1e-10)
    assert log_det.abs().min() > 1e-3


def test_log_prob_and_nll():
    model = make_model(seed=4, dtype=torch.float64)
    x, inputs = torch.randn(5, D, dtype=torch.float64), inputs_for(5, dtype=torch.float64)
    z, log_det = model(x, inputs)
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = normal.log_prob(z).sum(1) + log_det
    torch.testing.assert_close(model.log_prob(x, inputs), expected)
    nll = model.nll(x, inputs)
    torch.testing.assert_close(nll, -(expected.mean()) - 0.5 * D * math.log(2 * math.pi))
    torch.testing.assert_close(model.nll(x, inputs, per_dim=True), nll / D)
    # the same from features computed once (the feature-regression training step)
    torch.testing.assert_close(model.nll(x, features=model.condition(inputs)), nll)
    with pytest.raises(ValueError, match="exactly one of inputs and features"):
        model.nll(x, inputs, features=model.condition(inputs))
    with pytest.raises(ValueError, match="exactly one of inputs and features"):
        model.nll(x)
    fresh = ConditionalINN(D, SpectrumConditioner(NPIX, kind="mlp", features=3, hidden=4), 2, 4, 1)
    torch.testing.assert_close(
        fresh.log_prob(x.float(), inputs.float()), normal.log_prob(x.float()).sum(1)
    )


def test_sample_equals_plain_reverse_of_same_draws():
    model = make_model(seed=5)
    inputs, n = inputs_for(3), 7
    with torch.no_grad():
        feats = model.condition(inputs)
        draws = model.sample(feats, n, torch.Generator().manual_seed(42))
        z = torch.randn((3, n, D), generator=torch.Generator().manual_seed(42))
        plain = model.reverse(z.reshape(-1, D), inputs.repeat_interleave(n, dim=0))
    assert draws.shape == (3, n, D)
    torch.testing.assert_close(draws, plain.reshape(3, n, D), rtol=1e-5, atol=1e-5)


def test_sample_reproducible_and_chunk_independent():
    model = make_model(seed=6)
    with torch.inference_mode():
        feats = model.condition(inputs_for(4))
        ref = model.sample(feats, 50, torch.Generator().manual_seed(0), chunk_size=50)
        again = model.sample(feats, 50, torch.Generator().manual_seed(0))
        other = model.sample(feats, 50, torch.Generator().manual_seed(1))
        chunked = [
            model.sample(feats, 50, torch.Generator().manual_seed(0), chunk_size=k)
            for k in (1, 7, 64)
        ]
    assert torch.equal(ref, again)
    assert not torch.allclose(ref, other)
    for out in chunked:
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_sample_never_runs_concatenated_first_layer():
    """The cached path broadcasts c instead of evaluating Linear(cat([x, c])) on B*S rows."""
    model = make_model(seed=7)
    calls = []
    for block in model.flow.module_list[::2]:
        for sub in (block.subnet1, block.subnet2):
            sub[0].register_forward_hook(lambda m, a, o: calls.append(a[0].shape))
    with torch.no_grad():
        feats = model.condition(inputs_for(2))
        model.sample(feats, 20)
        assert calls == []
        model.reverse(torch.zeros(2, D), inputs_for(2))
    assert len(calls) == 6


def test_auto_chunk_size_bound():
    for batch, n, width in [(1, 10, 8), (1000, 10000, 256), (10**7, 5, 512), (0, 3, 4)]:
        chunk = auto_chunk_size(batch, n, width, itemsize=4, max_bytes=256 * 2**20)
        assert 1 <= chunk <= n
        assert chunk == 1 or max(batch, 1) * chunk * width * 4 <= 256 * 2**20
    assert auto_chunk_size(1000, 10000, 256) == 262
    assert auto_chunk_size(2, 5, 4, max_bytes=10**9) == 5


def test_sample_uses_memory_bounded_chunks(monkeypatch):
    model = make_model(seed=8)
    width = max(model.subnet_hidden, 2 * D)
    # on CPU the (smaller) CPU_CHUNK_BYTES applies; accelerators use DEFAULT_MAX_CHUNK_BYTES
    assert cinn_module.CPU_CHUNK_BYTES <= cinn_module.DEFAULT_MAX_CHUNK_BYTES == 256 * 2**20
    monkeypatch.setattr(cinn_module, "CPU_CHUNK_BYTES", 3 * width * 4 * 2)
    sizes = []
    original = model.flow.reverse_conditioned

    def spy(z, caches):
        sizes.append(z.shape[1])
        return original(z, caches)

    monkeypatch.setattr(model.flow, "reverse_conditioned", spy)
    with torch.no_grad():
        feats = model.condition(inputs_for(2))
        out = model.sample(feats, 10, torch.Generator().manual_seed(3))
        ref = model.sample(feats, 10, torch.Generator().manual_seed(3), chunk_size=10)
    assert sizes == [3, 3, 3, 1, 10]
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_sample_argument_errors():
    model = make_model()
    feats = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(feats, 0)
    with pytest.raises(ValueError, match="chunk_size"):
        model.sample(feats, 3, chunk_size=0)
    with pytest.raises(ValueError, match=r"features must have shape \[B, 5\]"):
        model.sample(torch.zeros(2, 4), 3)
    with pytest.raises(TypeError, match="floating"):
        model.sample(torch.zeros(2, 5, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match="batch sizes"):
        model(torch.zeros(3, D), inputs_for(2))
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        model(torch.zeros(2, D + 1), inputs_for(2))


def test_architecture_round_trip():
    model = make_model(kind="cnn", seed=9)
    arch = model.architecture
    assert tuple(arch) == ARCHITECTURE_KEYS
    restored_arch = json.loads(json.dumps(arch))
    assert restored_arch == arch
    rebuilt = build_cinn(restored_arch).eval()
    assert rebuilt.architecture == arch
    for a, b in zip(model.flow.module_list[1::2], rebuilt.flow.module_list[1::2], strict=True):
        assert torch.equal(a.perm, b.perm)
    x, inputs = torch.randn(3, D), inputs_for(3)
    with torch.no_grad():
        assert not torch.allclose(rebuilt(x, inputs)[0], model(x, inputs)[0])
        rebuilt.load_state_dict(model.state_dict(), strict=True)
        assert torch.equal(rebuilt(x, inputs)[0], model(x, inputs)[0])
        feats = model.condition(inputs)
        assert torch.equal(
            rebuilt.sample(feats, 5, torch.Generator().manual_seed(1)),
            model.sample(feats, 5, torch.Generator().manual_seed(1)),
        )


def _arch() -> dict:
    return make_model().architecture


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.pop("clamp"), "missing keys \\['clamp'\\]"),
        (lambda a: a.update(extra=1), "unknown keys \\['extra'\\]"),
        (lambda a: a["conditioner"].pop("pool"), "conditioner.*missing keys \\['pool'\\]"),
        (lambda a: a["conditioner"].update(kind="rnn"), "kind"),
        (lambda a: a.update(conditioner=[1, 2]), "conditioner"),
        (lambda a: a.update(n_params=1), "n_params"),
        (lambda a: a.update(n_blocks=0), "n_blocks"),
        (lambda a: a.update(subnet_hidden=2.5), "hidden"),
        (lambda a: a.update(clamp=-1.0), "clamp"),
        (lambda a: a.update(permutation_seed=-3), "permutation_seed"),
        (lambda a: a.update(npix="24"), "npix"),
    ],
)
def test_bad_architecture(mutate, match):
    arch = _arch()
    mutate(arch)
    with pytest.raises(ValueError, match=match):
        build_cinn(arch)


def test_build_cinn_rejects_non_mapping_and_bad_conditioner():
    with pytest.raises(ValueError, match="mapping"):
        build_cinn([("n_params", 3)])
    with pytest.raises(TypeError, match="SpectrumConditioner"):
        ConditionalINN(3, nn.Linear(2, 2), 2, 8, 1)


def _draws(model: ConditionalINN, feats: torch.Tensor) -> torch.Tensor:
    z = torch.randn(feats.shape[0], 50, model.n_params, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        return model.reverse_draws(z, feats, chunk_size=20)


def test_compile_sampling_falls_back_with_a_warning(monkeypatch):
    """A compiler failure costs a warning, never a result: the uncompiled pass takes over."""
    model = make_model().eval()
    feats = model.condition(inputs_for(3))
    eager = _draws(model, feats)

    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(cinn_module.torch, "compile", broken)
    assert model.compile_sampling() is model and model.sampling_compiled
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        out = _draws(model, feats)
    torch.testing.assert_close(out, eager, rtol=0, atol=0)
    assert not model.sampling_compiled
    model.compile_sampling()
    assert not model.compile_sampling(False).sampling_compiled


def test_compiled_sampling_does_not_pickle(monkeypatch):
    import pickle

    monkeypatch.setattr(cinn_module.torch, "compile", lambda fn, **kw: (lambda *a: fn(*a)))
    model = make_model().compile_sampling()
    copy_ = pickle.loads(pickle.dumps(model))
    assert model.sampling_compiled and not copy_.sampling_compiled
    feats = model.condition(inputs_for(2))
    torch.testing.assert_close(_draws(copy_, feats), _draws(model, feats))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, inside the compiler
def test_compiled_sampling_matches_eager():
    """The real torch.compile (tens of seconds): same draws to float32 rounding, any shape."""
    model = make_model().eval()
    feats = model.condition(inputs_for(5))
    eager = _draws(model, feats)
    model.compile_sampling()
    torch.testing.assert_close(_draws(model, feats), eager, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(_draws(model, feats[:2]), eager[:2], rtol=1e-4, atol=1e-5)
    assert model.sampling_compiled


def test_architecture_with_line_windows_round_trips_and_unknown_keys_fail():
    arch = {"n_params": 3, "npix": 200, "n_blocks": 2, "subnet_hidden": 16, "subnet_layers": 1,
            "clamp": 2.0, "permutation_seed": 0,
            "conditioner": {"kind": "cnn", "channels": [4], "features": 8, "pool": 4,
                            "hidden": 8, "line_pixels": [5, 6, 150], "line_hidden": 7}}
    net = build_cinn(arch)
    assert net.architecture == arch
    assert set(arch["conditioner"]) <= set(CONDITIONER_KEYS) | set(CONDITIONER_OPTIONAL_KEYS)
    bad = {**arch, "conditioner": {**arch["conditioner"], "lines": [5000.0]}}
    with pytest.raises(ValueError, match=r"unknown keys \['lines'\]"):
        build_cinn(bad)
