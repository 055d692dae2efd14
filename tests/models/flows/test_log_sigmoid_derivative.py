"""log sigma'(w) of the flows' sigmoid and logit maps, one vectorised pass: torch's logsigmoid pair to float32
rounding, its gradient 1 - 2 sigmoid(w) (also at w = 0), and twice differentiable."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.flows.log_sigmoid_derivative import log_sigmoid_derivative


def test_matches_the_logsigmoid_pair_against_float64_and_in_gradient():
    torch.manual_seed(0)
    w64 = torch.cat([0.1 * torch.randn(1000), 5 * torch.randn(1000), 60 * torch.randn(1000)]).double()
    exact = F.logsigmoid(w64) + F.logsigmoid(-w64)
    w = w64.float().requires_grad_(True)
    ours = log_sigmoid_derivative(w)
    assert (ours.double() - exact).abs().max() <= 2.5e-7 * (1 + exact.abs()).max()  # per-element rounding
    (grad,) = torch.autograd.grad(ours.sum(), w)
    torch.testing.assert_close(grad, 1 - 2 * torch.sigmoid(w.detach()))
    (grad_pair,) = torch.autograd.grad((F.logsigmoid(w) + F.logsigmoid(-w)).sum(), w)
    torch.testing.assert_close(grad, grad_pair, rtol=1e-5, atol=1e-6)


def test_exact_at_zero_and_twice_differentiable():
    zero = torch.zeros(3, requires_grad=True)
    value = log_sigmoid_derivative(zero)
    torch.testing.assert_close(value, torch.full((3,), -2 * torch.log(torch.tensor(2.0))))
    (grad,) = torch.autograd.grad(value.sum(), zero)
    assert torch.equal(grad, torch.zeros(3))
    w = (3 * torch.randn(2, 5, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(log_sigmoid_derivative, (w,))
    assert torch.autograd.gradgradcheck(log_sigmoid_derivative, (w,))
