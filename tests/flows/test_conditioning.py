"""Tests of the input encoding and the conditioning networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from specutils_cinn.flows import (
    FLUX_FILL,
    LOG_SIGMA_FILL,
    SIGMA_MAX,
    SIGMA_MIN,
    SpectrumConditioner,
    encode_inputs,
)


def spectra(n: int = 3, npix: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    flux = 1.0 + 0.1 * rng.standard_normal((n, npix))
    sigma = rng.uniform(0.01, 0.1, (n, npix))
    valid = rng.random((n, npix)) > 0.3
    return flux, sigma, valid


def test_encode_values_and_fills():
    flux, sigma, valid = spectra()
    enc = encode_inputs(flux, sigma, valid)
    assert enc.shape == (3, 3, 50) and enc.dtype == torch.float32
    v = torch.from_numpy(valid)
    torch.testing.assert_close(enc[:, 0][v], torch.from_numpy(flux - 1).float()[v])
    torch.testing.assert_close(enc[:, 1][v], torch.from_numpy(np.log(sigma)).float()[v])
    assert torch.all(enc[:, 0][~v] == FLUX_FILL)
    assert torch.all(enc[:, 1][~v] == torch.tensor(LOG_SIGMA_FILL, dtype=torch.float32))
    assert LOG_SIGMA_FILL == pytest.approx(math.log(SIGMA_MAX))
    assert torch.equal(enc[:, 2], v.float())


def test_masked_pixels_only_seen_through_valid_channel():
    flux, sigma, valid = spectra(seed=1)
    enc = encode_inputs(flux, sigma, valid)
    flux2, sigma2 = flux.copy(), sigma.copy()
    flux2[~valid] = np.where(np.arange((~valid).sum()) % 2, np.nan, 1e6)
    sigma2[~valid] = np.where(np.arange((~valid).sum()) % 3, -1.0, np.inf)
    enc2 = encode_inputs(flux2, sigma2, valid)
    assert torch.equal(enc, enc2)
    # unmasking a pixel does change the encoding (the test can fail)
    valid3 = valid.copy()
    valid3[0, np.flatnonzero(~valid[0])[0]] = True
    assert not torch.equal(encode_inputs(flux, sigma, valid3), enc)


def test_nonfinite_or_nonpositive_sigma_counts_as_invalid():
    flux = np.array([1.0, np.nan, 1.1, 0.9, 1.0])
    sigma = np.array([0.1, 0.1, 0.0, np.inf, 1e-9])
    valid = np.ones(5, dtype=bool)
    enc = encode_inputs(flux, sigma, valid)
    assert enc.shape == (1, 3, 5)
    assert enc[0, 2].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert torch.isfinite(enc).all()
    assert enc[0, 1, 4].item() == pytest.approx(math.log(SIGMA_MIN))
    big = encode_inputs(np.ones(1), np.array([1e3]), np.ones(1, dtype=bool))
    assert big[0, 1, 0].item() == pytest.approx(math.log(SIGMA_MAX))


def test_encode_accepts_tensors_and_readonly_arrays():
    flux, sigma, valid = spectra()
    for arr in (flux, sigma, valid):
        arr.flags.writeable = False
    enc_np = encode_inputs(flux, sigma, valid, dtype=torch.float64)
    assert enc_np.dtype == torch.float64
    enc_t = encode_inputs(
        torch.from_numpy(flux.copy()),
        torch.from_numpy(sigma.copy()),
        torch.from_numpy(valid.copy()),
        dtype=torch.float64,
    )
    assert torch.equal(enc_np, enc_t)


def test_encode_errors():
    flux, sigma, valid = spectra()
    with pytest.raises(ValueError, match="share"):
        encode_inputs(flux, sigma[:, :-1], valid)
    with pytest.raises(ValueError, match="share"):
        encode_inputs(flux[None], sigma[None], valid[None])
    with pytest.raises(TypeError, match="boolean"):
        encode_inputs(flux, sigma, valid.astype(float))
    with pytest.raises(TypeError, match="floating"):
        encode_inputs(flux, sigma, valid, dtype=torch.int32)


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_conditioner_shapes_and_mask_invariance(kind):
    torch.manual_seed(0)
    net = SpectrumConditioner(50, channels=(4, 8), features=6, kind=kind, pool=3, hidden=16)
    flux, sigma, valid = spectra()
    feats = net(encode_inputs(flux, sigma, valid))
    assert feats.shape == (3, 6)
    flux2 = flux.copy()
    flux2[~valid] = 123.0
    torch.testing.assert_close(net(encode_inputs(flux2, sigma, valid)), feats, rtol=0, atol=0)
    flux2[valid] += 0.5
    assert not torch.allclose(net(encode_inputs(flux2, sigma, valid)), feats)
    assert net.config() == {
        "kind": kind,
        "channels": [4, 8],
        "features": 6,
        "pool": 3,
        "hidden": 16,
    }


def test_cnn_layout_and_cost_for_4most_sized_spectrum():
    net = SpectrumConditioner(17000)
    convs = [m for m in net.net if isinstance(m, nn.Conv1d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs] == [
        (3, 16, 9, 4),
        (16, 32, 5, 4),
        (32, 64, 5, 4),
        (64, 64, 3, 2),
    ]
    macs = []

    def count(module, args, out):
        if isinstance(module, nn.Conv1d):
            macs.append(out.numel() * module.in_channels * module.kernel_size[0])
        elif isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)

    for m in net.net:
        m.register_forward_hook(count)
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 17000))
    assert out.shape == (1, 128)
    flops = 2 * sum(macs)
    assert 10e6 <= flops <= 22e6, flops


def test_conditioner_errors():
    net = SpectrumConditioner(20, channels=(4,), features=3, pool=2, hidden=8)
    with pytest.raises(ValueError, match=r"\[B, 3, 20\]"):
        net(torch.zeros(2, 3, 21))
    with pytest.raises(ValueError, match="kind"):
        SpectrumConditioner(20, kind="rnn")
    with pytest.raises(ValueError, match="channels"):
        SpectrumConditioner(20, channels=(4,) * 7)
    with pytest.raises(ValueError, match="channels"):
        SpectrumConditioner(20, channels="16")
    with pytest.raises(ValueError, match="npix"):
        SpectrumConditioner(0)
    with pytest.raises(ValueError, match="features"):
        SpectrumConditioner(20, features=-1)


def test_line_window_branch_reads_its_pixels_at_full_resolution():
    torch.manual_seed(0)
    plain = SpectrumConditioner(400, channels=(8, 8), features=6, pool=4, hidden=16)
    lined = SpectrumConditioner(400, channels=(8, 8), features=6, pool=4, hidden=16,
                                line_pixels=[10, 11, 12, 300], line_hidden=5)
    assert lined.config() == {**plain.config(), "line_pixels": [10, 11, 12, 300],
                              "line_hidden": 5}
    assert "line_pixels" not in plain.config()
    # a new branch starts at zero: the features are those of the same network without it
    missing, unexpected = lined.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["line_net.1.bias", "line_net.1.weight",
                                                  "line_net.3.bias", "line_net.3.weight"]
    x = torch.randn(3, 3, 400)
    with torch.no_grad():
        torch.testing.assert_close(lined(x), plain(x), rtol=0, atol=0)
        nn.init.normal_(lined.line_net[3].weight)
        base = lined(x)
        y = x.clone()
        y[:, 0, 300] += 1.0     # a window pixel moves the branch's output
        assert not torch.allclose(lined(y) - plain(y), base - plain(x))
        z = x.clone()
        z[:, 0, 200] += 1.0     # a pixel outside every window does not
        torch.testing.assert_close(lined(z) - plain(z), base - plain(x))


@pytest.mark.parametrize(("pixels", "match"), [
    ([0, 400], r"pixel indices in \[0, 400\)"),
    ([-1], "pixel indices"),
    ([3, 3], "distinct"),
    ([True], "pixel indices"),
])
def test_line_pixels_errors(pixels, match):
    with pytest.raises(ValueError, match=match):
        SpectrumConditioner(400, channels=(8,), features=4, pool=2, hidden=8,
                            line_pixels=pixels)
