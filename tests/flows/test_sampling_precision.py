"""bfloat16 sampling: the hidden layers of the coupling subnets in bfloat16, the rest float32."""

import numpy as np
import pytest
import torch
from torch import nn

from specutils_cinn.flows import GLOWCouplingBlock, MLPSubnet, build_cinn
from specutils_cinn.flows.cinn import SAMPLING_PRECISIONS


def _draws(net, inputs, precision, seed=5, n=4000):
    net.set_sampling_precision(precision)
    try:
        with torch.inference_mode():
            gen = torch.Generator().manual_seed(seed)
            return net.sample(net.condition(inputs), n, generator=gen)
    finally:
        net.set_sampling_precision("float32")


def _network():
    """A cINN with two hidden layers per subnet and non-trivial weights (seeded)."""
    torch.manual_seed(0)
    net = build_cinn({"n_params": 3, "npix": 64, "n_blocks": 4, "subnet_hidden": 64,
                      "subnet_layers": 2, "clamp": 2.0, "permutation_seed": 0,
                      "conditioner": {"kind": "mlp", "channels": [8], "features": 16, "pool": 1,
                                      "hidden": 32}})
    with torch.no_grad():
        for name, p in net.flow.named_parameters():
            p.normal_(0.0, 0.15 if "weight" in name else 0.05)
    return net.eval()


def test_bfloat16_draws_stay_within_a_small_fraction_of_the_posterior():
    net = _network()
    inputs = torch.randn(40, 3, 64)
    ref = _draws(net, inputs, "float32")
    bf = _draws(net, inputs, "bfloat16")
    other = _draws(net, inputs, "float32", seed=6)
    assert net.sampling_precision == "float32"
    assert not torch.equal(ref, bf)                        # the bfloat16 path ran
    assert bf.dtype == torch.float32
    sd = ref.std(dim=1)
    q = torch.tensor([0.16, 0.5, 0.84])
    shift_bf = (torch.quantile(bf, q, dim=1) - torch.quantile(ref, q, dim=1)).abs() / sd
    shift_mc = (torch.quantile(other, q, dim=1) - torch.quantile(ref, q, dim=1)).abs() / sd
    # same latent draws: bfloat16 moves the quantiles far less than new draws do
    assert float(shift_bf.median()) < 0.2 * float(shift_mc.median())
    assert float(shift_bf.max()) < 0.05


def test_precision_names_are_checked(linear_gaussian_model):
    _, model = linear_gaussian_model
    with pytest.raises(ValueError, match="precision must be one of"):
        model.network.set_sampling_precision("float16")
    assert set(SAMPLING_PRECISIONS) == {"float32", "bfloat16"}


def test_subnets_that_are_not_plain_mlps_stay_float32():
    torch.manual_seed(0)

    block = GLOWCouplingBlock(4, 3, lambda i, o: nn.Sequential(nn.Linear(i, 8), nn.Tanh(),
                                                                nn.Linear(8, o)))
    c = torch.randn(2, 3)
    cache = block.precondition(c, torch.bfloat16)
    assert cache.subnet1.hidden is None                     # Tanh: not the make_subnet layout
    mlp = GLOWCouplingBlock(4, 3, MLPSubnet(16, 2))
    for p in mlp.parameters():
        nn.init.normal_(p, std=0.3)
    cache = mlp.precondition(c, torch.bfloat16)
    assert len(cache.subnet1.hidden) == 1 and cache.subnet1.hidden[0][0].dtype == torch.bfloat16
    z = torch.randn(2, 7, 4)
    exact = mlp.reverse_conditioned(z, mlp.precondition(c))
    approx = mlp.reverse_conditioned(z, cache)
    assert approx.dtype == torch.float32
    np.testing.assert_allclose(approx.detach().numpy(), exact.detach().numpy(), atol=0.05)


def test_estimator_chooses_by_hardware(linear_gaussian_model, monkeypatch):
    from specutils_cinn import estimator as est_mod
    from specutils_cinn.devices import has_bfloat16_hardware

    _, model = linear_gaussian_model
    est = est_mod.CINNParameterEstimator(model, device="cpu")
    native = has_bfloat16_hardware("cpu")
    assert est.sampling_precision == ("bfloat16" if native else "float32")
    monkeypatch.setattr(est_mod, "has_bfloat16_hardware", lambda device: True)
    assert est.set_sampling_precision("auto").sampling_precision == "bfloat16"
    monkeypatch.setattr(est_mod, "has_bfloat16_hardware", lambda device: False)
    assert est.set_sampling_precision().sampling_precision == "float32"
    with pytest.raises(ValueError, match="precision must be"):
        est.set_sampling_precision("half")
