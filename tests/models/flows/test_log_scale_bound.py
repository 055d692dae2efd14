"""The single-tanh soft bound of ``models.flows.log_scale`` against the two-branch formula it replaced."""
from __future__ import annotations

import pytest
import torch

from models.flows.log_scale import bound_log_scale


def two_branch(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The former formula: both tanh branches evaluated, then selected."""
    positive = high * torch.tanh(raw / high)
    negative = -low * torch.tanh(raw / -low)
    return torch.where(raw >= 0, positive, negative)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("low, high", [(-5.0, 3.0), (-0.1, 0.3), (-2.7, 1.3), (-9.0, 7.0)])
def test_soft_bound_values_and_gradients_are_bit_identical(dtype, low, high):
    gen = torch.Generator().manual_seed(0)
    raw = 4 * torch.randn(20000, dtype=dtype, generator=gen)
    raw[:6] = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4], dtype=dtype)  # zero signs, tiny, saturated
    upstream = torch.randn(raw.shape, dtype=dtype, generator=gen)
    results = []
    for fn in (lambda r: bound_log_scale(r, low, high, "soft"), lambda r: two_branch(r, low, high)):
        r = raw.clone().requires_grad_()
        value = fn(r)
        value.backward(upstream)
        results.append((value.detach(), r.grad))
    (new, new_grad), (old, old_grad) = results
    assert new.dtype == dtype
    assert torch.equal(new, old) and torch.equal(new.signbit(), old.signbit())
    assert torch.equal(new_grad, old_grad)
    assert bool((new >= low).all() and (new <= high).all())  # tanh rounds to 1 when saturated
