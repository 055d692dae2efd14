"""Image transforms beyond the generic harness: Pyro's 1x1 convolution as oracle, the squeeze layout,
actnorm's data-dependent initialisation, what masks keep fixed, factor-out, and whole multi-scale flows."""
from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch
from pyro.distributions import transforms as pyro_t

from core.errors import DGMError
from models.flows.actnorm import ActNorm
from models.flows.chain import Chain
from models.flows.conv1x1 import InvertibleConv1x1
from models.flows.conv_coupling import conv_affine_coupling
from models.flows.factor_out import FactorOut
from models.flows.glow import GlowStep
from models.flows.architecture_registry import ARCHITECTURES
from models.flows.registry import randomize_
from models.flows.squeeze import Squeeze, Unsqueeze
from tests.models.flows.flow_testing import float64_default  # noqa: F401  (fixture)


def _images(*shape: int, seed: int = 0, scale: float = 1.5) -> torch.Tensor:
    return scale * torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _config(**options) -> SimpleNamespace:
    values = {"levels": 2, "steps": 1, "channels": 4, "blocks": 1, "log_scale_min": -5.0, "log_scale_max": 3.0,
              "log_scale_bound": "soft"}
    return SimpleNamespace(**{**values, **options})


# ---- invertible 1x1 convolution: Pyro's GeneralizedChannelPermute as the oracle ------------------
def test_invertible_conv1x1_matches_pyros_generalized_channel_permute(float64_default):
    """Same W = P L U on both sides: Pyro stores P = I[perm] and the dense LU; ours L, U, sign, log|diag|."""
    channels = 5
    ours = InvertibleConv1x1(channels, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours.lower.add_(0.4 * torch.randn(channels, channels))
        ours.upper.add_(0.4 * torch.randn(channels, channels))
        ours.log_s.add_(0.4 * torch.randn(channels))
    assert (ours.diag_sign < 0).any() and not torch.equal(ours.permutation, torch.arange(channels))
    theirs = pyro_t.GeneralizedChannelPermute(channels=channels, permutation=ours.permutation)
    lower, upper = ours.factors()
    with torch.no_grad():
        theirs.LU.copy_(lower.tril(-1) + upper)
    x = _images(3, channels, 4, 6)
    y = ours._call(x)
    torch.testing.assert_close(y, theirs._call(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours._inverse(y), theirs._inverse(y), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours.log_abs_det_jacobian(x, y), theirs.log_abs_det_jacobian(x, y),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.weight(), theirs.permutation @ theirs.L @ theirs.U, rtol=1e-12, atol=1e-12)


def test_invertible_conv1x1_starts_as_a_rotation_or_the_identity():
    w = InvertibleConv1x1(6, generator=torch.Generator().manual_seed(3)).weight().detach()
    torch.testing.assert_close(w @ w.T, torch.eye(6), rtol=0, atol=1e-5)
    assert not torch.allclose(w, torch.eye(6))
    torch.testing.assert_close(InvertibleConv1x1(6, init="identity").weight().detach(), torch.eye(6))


# ---- squeeze ----------------------------------------------------------------------------------------
def test_squeeze_layout_and_its_inverse():
    """y[c*4 + 2i + j, h, w] = x[c, 2h + i, 2w + j]; Unsqueeze is the same map backwards."""
    x = torch.arange(2 * 4 * 6, dtype=torch.float64).reshape(2, 4, 6)
    y = Squeeze()._call(x)
    assert y.shape == (8, 2, 3)
    for c, i, j, h, w in [(0, 0, 0, 0, 0), (1, 1, 0, 1, 2), (0, 1, 1, 1, 1), (1, 0, 1, 0, 2)]:
        assert y[c * 4 + 2 * i + j, h, w] == x[c, 2 * h + i, 2 * w + j]
    torch.testing.assert_close(Unsqueeze()._call(y), x, rtol=0, atol=0)
    torch.testing.assert_close(Unsqueeze()._inverse(x), y, rtol=0, atol=0)
    assert Squeeze().forward_shape((5, 2, 4, 6)) == (5, 8, 2, 3) and Unsqueeze().forward_shape((8, 2, 3)) == (2, 4, 6)


def test_squeeze_refuses_odd_grids_and_unsqueeze_odd_channels():
    with pytest.raises(DGMError, match="divisible by 2"):
        Squeeze()._call(torch.zeros(1, 7, 7))
    with pytest.raises(DGMError, match="divisible by 4"):
        Unsqueeze().forward_shape((6, 2, 2))


# ---- actnorm -------------------------------------------------------------------------------------------
def test_actnorm_initialises_from_the_first_training_batch_only():
    """The first density pass in training mode whitens each channel; later passes and eval mode do not."""
    layer = ActNorm(3)
    y = torch.randn(16, 3, 5, 5) * torch.tensor([0.5, 2.0, 7.0]).view(3, 1, 1) + torch.tensor([1.0, -3.0, 10.0]).view(3, 1, 1)
    layer.eval()
    torch.testing.assert_close(layer._inverse(y), y)              # eval: no initialisation, the identity
    assert not layer.initialized
    layer.train()
    x = layer._inverse(y)
    assert layer.initialized
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(x.std((0, 2, 3), unbiased=False), torch.ones(3), rtol=0, atol=1e-4)
    params = [p.detach().clone() for p in layer.parameters()]
    layer._inverse(3.0 * y + 1.0)                                  # a second batch: parameters unchanged
    assert all(torch.equal(a, b) for a, b in zip(params, layer.parameters()))
    twin = ActNorm(3).train()                                      # a loaded layer never re-initialises
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(twin._inverse(5.0 * y), layer._inverse(5.0 * y))


# ---- couplings: what the masks keep fixed -------------------------------------------------------------
@pytest.mark.parametrize("mask, parity", [("checkerboard", 0), ("checkerboard", 1), ("channel", 0), ("channel", 1)])
def test_couplings_keep_the_conditioning_part_and_read_only_it(mask, parity):
    t = randomize_(conv_affine_coupling((4, 4, 4), mask, parity, hidden=6, blocks=1), torch.Generator().manual_seed(0),
                   0.3).double()
    if mask == "checkerboard":
        h, w = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
        keep = ((h + w + parity) % 2 == 0).expand(4, 4, 4)
    else:
        keep = torch.zeros(4, 4, 4, dtype=torch.bool)
        keep[:2] = True
        keep = keep if parity == 0 else ~keep
    x = _images(4, 4, 4)
    y = t._call(x)
    torch.testing.assert_close(y[keep], x[keep], rtol=0, atol=0)
    assert not torch.allclose(y[~keep], x[~keep])
    x2 = x.clone()
    x2[~keep] += 1.0  # change only the transformed part: s and t stay, so it moves by exactly exp(s)
    y2 = t._call(x2)
    log_scale = t._params(t._split(x)[0])[1]
    scale = log_scale.exp()[~keep] if mask == "checkerboard" else log_scale.exp().flatten()
    torch.testing.assert_close((y2 - y)[~keep], scale, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t.log_abs_det_jacobian(x2, y2), t.log_abs_det_jacobian(x, y))


def test_fresh_layers_are_the_identity_and_a_fresh_glow_step_is_its_rotation():
    x = _images(2, 4, 6, 6).float()
    for t in [conv_affine_coupling((4, 6, 6), "checkerboard"), conv_affine_coupling((4, 6, 6), "channel"), ActNorm(4)]:
        torch.testing.assert_close(t._call(x), x)
    step = GlowStep((4, 6, 6), hidden=8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(step._call(x), step.conv._call(x))


# ---- factor-out and whole multi-scale flows ---------------------------------------------------------
def test_factor_out_is_the_identity_on_the_factored_channels():
    inner = [randomize_(conv_affine_coupling((2, 4, 4), "checkerboard", 0, hidden=6, blocks=0),
                        torch.Generator().manual_seed(0), 0.3)]
    t = FactorOut(inner, 2, (4, 4, 4)).double()
    x = _images(3, 4, 4, 4)
    y = t._call(x)
    torch.testing.assert_close(y[:, 2:], x[:, 2:], rtol=0, atol=0)
    torch.testing.assert_close(y[:, :2], t.inner._call(x[:, :2]))
    with pytest.raises(DGMError, match="map"):
        FactorOut([Squeeze()], 2, (4, 4, 4))
    with pytest.raises(DGMError, match="keep some"):
        FactorOut(inner, 4, (4, 4, 4))


@pytest.mark.parametrize("arch, levels, squeezes, size", [("realnvp", 2, 1, 4), ("realnvp", 3, 2, 8), ("glow", 1, 1, 4),
                                                          ("glow", 2, 2, 4)])
def test_multiscale_flows_are_bijections_of_the_image_shape_with_exact_log_dets(arch, levels, squeezes, size):
    """Whole RealNVP / Glow flows on a (1, size, size) image: shape kept, inverse, log-det against autograd."""
    gen = torch.Generator().manual_seed(1)
    layers = ARCHITECTURES[arch].build(_config(levels=levels), (1, size, size))
    flow = Chain(layers).double()
    for m in flow.modules():
        if isinstance(m, ActNorm):
            m.initialized.fill_(True)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    assert sum(isinstance(m, Squeeze) and not isinstance(m, Unsqueeze) for m in flow.modules()) == squeezes
    x = _images(2, 1, size, size)
    y = flow._call(x)
    assert y.shape == x.shape
    torch.testing.assert_close(flow._inverse(y), x, rtol=1e-9, atol=1e-9)
    ladj = flow.log_abs_det_jacobian(x, y)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(flow._call, x[i]).reshape(size * size, size * size)
        torch.testing.assert_close(ladj[i], torch.linalg.slogdet(jac)[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("arch, levels, message", [("realnvp", 3, "1x1 grid"), ("glow", 3, "divisible by 8"),
                                                   ("glow", 0, "at least 1")])
def test_multiscale_refuses_grids_it_cannot_squeeze(arch, levels, message):
    with pytest.raises(DGMError, match=message):
        ARCHITECTURES[arch].build(_config(levels=levels), (1, 4, 4) if arch == "realnvp" else (1, 28, 28))
