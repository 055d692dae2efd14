"""Our transforms against Pyro's own, on identical parameters, in float64 (Pyro only as an oracle here).

Where Pyro clamps log-scales to (-5, 3), our transforms use the "clamp" bound with the same limits,
and the parameters are large enough that some log-scales are clamped.
"""
from __future__ import annotations

import pytest
import torch
from pyro.distributions import transforms as pyro_t
from pyro.nn import AutoRegressiveNN, DenseNN

from models.flows import AffineAutoregressive, AffineCoupling, Householder, MADE, Planar, Radial, Sylvester
from models.flows.conditioners import MLPConditioner
from models.flows.log_scale import bound_log_scale
from models.flows.masks import halves_mask
from tests.models.flows.flow_testing import float64_default  # noqa: F401  (fixture)

D = 6
CLAMP = {"log_scale_min": -5.0, "log_scale_max": 3.0, "bound": "clamp"}


def _randomize(module: torch.nn.Module, seed: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _x(seed: int = 5, batch: int = 7, dim: int = D) -> torch.Tensor:
    return 2.0 * torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed))


def _assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_planar_matches_pyro(float64_default):
    ours, theirs = Planar(D), pyro_t.Planar(D)
    _randomize(theirs, 0, 0.8)
    ours.load_state_dict({"bias": theirs.bias, "u": theirs.u, "w": theirs.w})
    x = _x()
    y = ours._call(x)
    _assert_close(y, theirs(x))
    _assert_close(ours.log_abs_det_jacobian(x, y), theirs.log_abs_det_jacobian(x, theirs(x)))


def test_radial_matches_pyro(float64_default):
    ours, theirs = Radial(D), pyro_t.Radial(D)
    _randomize(theirs, 1, 0.8)
    ours.load_state_dict(theirs.state_dict())
    x = _x()
    y, y_p = ours._call(x), theirs(x)
    _assert_close(y, y_p)
    _assert_close(ours.log_abs_det_jacobian(x, y), theirs.log_abs_det_jacobian(x, y_p))


def test_householder_matches_pyro(float64_default):
    ours, theirs = Householder(D, 3), pyro_t.Householder(D, count_transforms=3)
    _randomize(theirs, 2, 1.0)
    ours.load_state_dict({"vectors": theirs.u_unnormed})
    x = _x()
    y = ours._call(x)
    _assert_close(y, theirs(x))
    _assert_close(ours._inverse(y), theirs._inverse(y))
    _assert_close(ours.log_abs_det_jacobian(x, y), theirs.log_abs_det_jacobian(x, theirs(x)))


def _sylvester_pair(dim: int = 4) -> tuple[Sylvester, pyro_t.Sylvester]:
    """Pyro's Sylvester with Q = the reversal P (two Householder swaps), and ours on the same parameters.

    Pyro computes y = x + R_p^T Q_p^T tanh(Q_p S_p^T x + b); ours y = x + Q R tanh(R~ Q^T x + b). With
    Q = Q_p = P: R = P R_p^T P and R~ = P S_p^T P (upper triangular again), the same b and reflections.
    """
    theirs = pyro_t.Sylvester(dim, count_transforms=dim // 2)
    _randomize(theirs, 3, 0.7)
    swaps = torch.zeros(dim // 2, dim)
    for i in range(dim // 2):
        swaps[i, i], swaps[i, dim - 1 - i] = 1.0, -1.0
    with torch.no_grad():
        theirs.u_unnormed.copy_(swaps)
    ours = Sylvester(dim, "householder", num_reflections=dim // 2, log_det_eps=1e-8)
    flip = torch.arange(dim - 1, -1, -1)

    def conj(m: torch.Tensor) -> torch.Tensor:  # P M^T P
        return m.T[flip][:, flip]

    with torch.no_grad():
        ours.vectors.copy_(theirs.u_unnormed)
        ours.r_upper.copy_(conj(theirs.R_dense.triu(1)))
        ours.s_upper.copy_(conj(theirs.S_dense.triu(1)))
        ours.r_diag.copy_(theirs.R_diag.flip(0))
        ours.s_diag.copy_(theirs.S_diag.flip(0))
        ours.b.copy_(theirs.b)
    return ours, theirs


def test_sylvester_forward_map_matches_pyro(float64_default):
    ours, theirs = _sylvester_pair()
    torch.testing.assert_close(ours.Q(), torch.eye(4).flip(1))
    torch.testing.assert_close(ours.R(), ours.R().triu())  # still upper triangular
    x = _x(dim=4)
    _assert_close(ours._call(x), theirs(x))


@pytest.mark.xfail(strict=True, reason="pyro 1.9.2 Sylvester.log_abs_det_jacobian ignores Q (correct only for Q = I); "
                   "if this starts passing, compare our log-det with Pyro's directly")
def test_pyro_sylvester_log_det_matches_autograd(float64_default):
    _, theirs = _sylvester_pair()
    x = _x(dim=4, batch=1)[0]
    expected = torch.linalg.slogdet(torch.autograd.functional.jacobian(theirs._call, x))[1]
    torch.testing.assert_close(theirs.log_abs_det_jacobian(x, theirs(x)), expected)


def test_our_sylvester_log_det_is_right_where_pyros_is_not(float64_default):
    """On the same map, ours equals autograd's slogdet; Pyro's differs (see the xfail above)."""
    ours, theirs = _sylvester_pair()
    x = _x(dim=4, batch=1)[0]
    expected = torch.linalg.slogdet(torch.autograd.functional.jacobian(ours._call, x))[1]
    ours_ladj = ours.log_abs_det_jacobian(x, ours._call(x))
    torch.testing.assert_close(ours_ladj, expected, rtol=1e-7, atol=1e-7)  # eps = 1e-8 inside the log, as Pyro
    assert abs(float(theirs.log_abs_det_jacobian(x, theirs(x)).detach() - expected)) > 1e-3


def test_affine_coupling_matches_pyro(float64_default):
    split = (D + 1) // 2
    hypernet = DenseNN(split, [16], param_dims=[D - split, D - split])
    _randomize(hypernet, 4, 1.5)
    conditioner = MLPConditioner(split, D - split, (16,), 2, zero_init=False)
    linears = [m for m in conditioner.net if isinstance(m, torch.nn.Linear)]
    for ours_layer, their_layer in zip(linears, hypernet.layers, strict=True):
        ours_layer.load_state_dict(their_layer.state_dict())
    ours = AffineCoupling(halves_mask(D), conditioner, **CLAMP)
    theirs = pyro_t.AffineCoupling(split, hypernet, log_scale_min_clip=-5.0, log_scale_max_clip=3.0)
    x = _x()
    raw = conditioner(x[:, :split])[1]
    assert (raw < -5).any() or (raw > 3).any(), "the test must exercise the clamp"
    y = ours._call(x)
    _assert_close(y, theirs._call(x))
    _assert_close(ours.log_abs_det_jacobian(x, y), theirs.log_abs_det_jacobian(x, theirs._call(x)))
    _assert_close(ours._inverse(y), theirs._inverse(y))


def _made_pair(order: torch.Tensor) -> tuple[MADE, AutoRegressiveNN]:
    arn = AutoRegressiveNN(D, [24], param_dims=[1, 1], permutation=order)
    _randomize(arn, 6, 1.2)
    made = MADE(D, (24,), 2, order, zero_init=False)
    for ours_layer, their_layer in zip(made.layers, arn.layers, strict=True):
        torch.testing.assert_close(ours_layer.mask, their_layer.mask.to(ours_layer.mask.dtype), rtol=0, atol=0)
        ours_layer.load_state_dict(their_layer.state_dict())
    return made, arn


def test_made_masks_and_outputs_match_pyro(float64_default):
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    made, arn = _made_pair(order)
    x = _x()
    for ours_out, their_out in zip(made(x), arn(x), strict=True):
        _assert_close(ours_out, their_out)


def test_iaf_matches_pyro_affine_autoregressive(float64_default):
    made, arn = _made_pair(torch.tensor([2, 5, 0, 1, 4, 3]))
    ours = AffineAutoregressive(made, "iaf", **CLAMP)
    theirs = pyro_t.AffineAutoregressive(arn, log_scale_min_clip=-5.0, log_scale_max_clip=3.0)
    x = _x()
    raw = made(x)[1]
    assert (raw < -5).any() or (raw > 3).any(), "the test must exercise the clamp"
    y = ours._call(x)
    _assert_close(y, theirs._call(x))
    _assert_close(ours.log_abs_det_jacobian(x, y), theirs.log_abs_det_jacobian(x, theirs._call(x)))
    # the inverse's D sequential passes amplify the block products' different summation order by up to
    # exp(3) per coordinate (the clamp's ceiling): 5.6e-9 on an AMD EPYC with MKL, 2e-11 on an Intel Xeon
    torch.testing.assert_close(ours._inverse(y), theirs._inverse(y), rtol=1e-7, atol=1e-7)


def test_maf_is_pyros_affine_autoregressive_inverted(float64_default):
    """MAF: our _inverse (density, one pass) is Pyro's _call; our _call (sampling) is Pyro's _inverse."""
    made, arn = _made_pair(torch.tensor([1, 3, 5, 0, 2, 4]))
    ours = AffineAutoregressive(made, "maf", **CLAMP)
    theirs = pyro_t.AffineAutoregressive(arn, log_scale_min_clip=-5.0, log_scale_max_clip=3.0)
    data = _x()
    base = ours._inverse(data)
    _assert_close(base, theirs._call(data))
    _assert_close(ours.log_abs_det_jacobian(base, data), -theirs.log_abs_det_jacobian(data, theirs._call(data)))
    # D fixed-point passes against Pyro's coordinate-by-coordinate inverse: our MADE's block products (issue #18)
    # sum in another order than Pyro's full matrix product, and the passes amplify that rounding (2e-11 here)
    torch.testing.assert_close(ours._call(base), theirs._inverse(base), rtol=1e-10, atol=1e-10)


def test_clamp_bound_is_pyros_clamp_preserving_gradients():
    from pyro.distributions.transforms.utils import clamp_preserve_gradients

    raw = torch.linspace(-9, 9, 37, dtype=torch.float64, requires_grad=True)
    ours = bound_log_scale(raw, -5.0, 3.0, "clamp")
    _assert_close(ours, clamp_preserve_gradients(raw, -5.0, 3.0))
    ours.sum().backward()
    _assert_close(raw.grad, torch.ones_like(raw))
