"""The soft bound of ``models.flows.log_scale`` against the two-branch tanh formula it computes.

s = c tanh(r / c) is evaluated as c (2 sigmoid(2 r / c) - 1) (issue #18: torch's CPU tanh is 7x slower than its
sigmoid): the values agree with the tanh formula in float64 to the rounding of the dtype in absolute terms (2 eps max(c, 1)), the
gradients too, and the exact properties (zero at zero, c exactly high or -low, saturation inside the bounds,
NaN propagated) hold exactly.
"""
from __future__ import annotations

import pytest
import torch

from models.flows.log_scale import _sum_form_is_exact, bound_log_scale, soft_bound_scale


def two_branch(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The textbook formula: both tanh branches evaluated, then selected."""
    positive = high * torch.tanh(raw / high)
    negative = -low * torch.tanh(raw / -low)
    return torch.where(raw >= 0, positive, negative)


BOUNDS = [(-5.0, 3.0), (-0.1, 0.3), (-2.7, 1.3), (-9.0, 7.0)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("low, high", BOUNDS)
def test_soft_bound_values_and_gradients_equal_the_tanh_formula_to_rounding(dtype, low, high):
    gen = torch.Generator().manual_seed(0)
    raw = 4 * torch.randn(20000, dtype=dtype, generator=gen)
    raw[:6] = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4], dtype=dtype)  # zero signs, tiny, saturated
    upstream = torch.randn(raw.shape, dtype=dtype, generator=gen)
    r = raw.clone().requires_grad_()
    value = bound_log_scale(r, low, high, "soft")
    value.backward(upstream)
    r64 = raw.double().requires_grad_()
    reference = two_branch(r64, low, high)
    reference.backward(upstream.double())
    eps = torch.finfo(dtype).eps
    c = max(high, -low, 1.0)
    assert value.dtype == dtype
    assert float((value.double() - reference).abs().max()) <= 2 * c * eps
    assert float(((r.grad.double() - r64.grad).abs() / upstream.double().abs()).max()) <= 8 * eps
    assert bool((value >= low).all() and (value <= high).all())
    assert torch.equal(value[:2], torch.zeros(2, dtype=dtype))  # a zero-initialised conditioner: the identity
    assert float(value[4]) == pytest.approx(high * float(torch.tanh(torch.tensor(1e4 / high))), abs=2 * c * eps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("low, high", BOUNDS)
def test_soft_bound_scale_is_exactly_high_or_minus_low(dtype, low, high):
    raw = torch.tensor([0.0, -0.0, 1.0, -1.0, float("inf"), -float("inf"), float("nan")], dtype=dtype)
    expected = torch.where(raw >= 0, torch.tensor(high, dtype=dtype), torch.tensor(-low, dtype=dtype))
    assert torch.equal(soft_bound_scale(raw, low, high), expected)
    value = bound_log_scale(raw, low, high, "soft")
    assert torch.isnan(value[-1]) and torch.equal(value[4:6], torch.tensor([high, low], dtype=dtype))


def test_both_forms_of_the_scale_are_used():
    """(-5, 3) takes the in-place sum form; (-2.7, 1.3) rounds in it, so float32 takes the exact lerp."""
    assert _sum_form_is_exact(-5.0, 3.0, torch.float32) and _sum_form_is_exact(-5.0, 3.0, torch.float64)
    assert not _sum_form_is_exact(-2.7, 1.3, torch.float32)
