"""The Bernoulli head's log-likelihood without ``log1p`` (``models.distributions.bernoulli_log_likelihood``):
as accurate as torch's ``Bernoulli(logits).to_event(3)`` against float64, the same gradient, exact at l = 0,
correct for soft targets, broadcasting and half precision, and kept by ``SummedBernoulli`` through Pyro's
plates."""
from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch

from data.specs import DATASETS
from models.distributions.bernoulli_log_likelihood import bernoulli_log_likelihood
from models.likelihoods import LIKELIHOODS, SummedBernoulli


def torchs(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return dist.Bernoulli(logits=logits, validate_args=False).to_event(3).log_prob(x)


@pytest.mark.parametrize("scale", [0.1, 3.0, 40.0])  # near 0, typical, and saturated logits (exp(-|l|) ~ 0)
def test_as_accurate_as_torchs_against_float64_with_the_same_gradient(scale):
    torch.manual_seed(0)
    logits64 = scale * torch.randn(7, 5, 1, 28, 28, dtype=torch.float64)
    x = (torch.rand(5, 1, 28, 28) < 0.4).float()
    exact = torchs(logits64, x.double())
    logits = logits64.float().requires_grad_(True)
    ours, reference = bernoulli_log_likelihood(logits, x, 3), torchs(logits, x)
    assert ours.shape == (7, 5) and ours.dtype == torch.float32
    ours_error = (ours.double() - exact).abs().max().item()
    torch_error = (reference.double() - exact).abs().max().item()
    # the log(1 + e) rounding adds at most 784 * 6e-8 ~ 5e-5 nats to a sum whose own rounding is of that size
    assert ours_error <= torch_error + 784 * 6e-8, (ours_error, torch_error)
    (grad,) = torch.autograd.grad(ours.sum(), logits)
    (grad_ref,) = torch.autograd.grad(reference.sum(), logits)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-6, atol=1e-7)


def test_gradient_is_exact_where_the_logit_is_zero():
    # a zero-initialised output layer gives l = 0 exactly; d/dl = x - sigmoid(0) = x - 1/2
    logits = torch.zeros(3, 4, requires_grad=True)
    x = torch.tensor([[0.0, 1.0, 0.0, 1.0]]).expand(3, 4)
    (grad,) = torch.autograd.grad(bernoulli_log_likelihood(logits, x, 1).sum(), logits)
    assert torch.equal(grad, x - 0.5)
    assert torch.allclose(bernoulli_log_likelihood(logits, x, 1), torch.full((3,), -4 * torch.log(torch.tensor(2.0))))


def test_gradients_in_both_arguments_and_soft_targets_match_autograd():
    torch.manual_seed(1)
    logits = (3 * torch.randn(2, 3, 6, dtype=torch.float64)).requires_grad_(True)
    soft = torch.rand(3, 6, dtype=torch.float64, requires_grad=True)  # x in [0, 1]: x l - softplus(l)
    assert torch.autograd.gradcheck(lambda a, b: bernoulli_log_likelihood(a, b, 1), (logits, soft))
    assert torch.autograd.gradgradcheck(lambda a, b: bernoulli_log_likelihood(a, b, 1), (logits, soft))
    closed_form = (soft * logits - torch.nn.functional.softplus(logits)).sum(-1)
    torch.testing.assert_close(bernoulli_log_likelihood(logits, soft, 1), closed_form)


def test_half_precision_logits_are_summed_in_float32():
    torch.manual_seed(2)
    logits = 3 * torch.randn(4, 1, 28, 28)
    x = (torch.rand(4, 1, 28, 28) < 0.3).float()
    half = bernoulli_log_likelihood(logits.bfloat16(), x, 3)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, bernoulli_log_likelihood(logits.bfloat16().float(), x, 3))


def test_the_head_uses_it_and_keeps_its_type_under_plates():
    spec = DATASETS["binarized_digits"]
    torch.manual_seed(0)
    logits = 3 * torch.randn(7, 5, 1, 8, 8)
    x = (torch.rand(5, 1, 8, 8) < 0.4).float()
    head = LIKELIHOODS["bernoulli"].distribution(logits, spec)
    assert torch.equal(head.log_prob(x), bernoulli_log_likelihood(logits, x, 3))
    torch.testing.assert_close(head.log_prob(x), torchs(logits, x))
    assert isinstance(head.expand((3, 7, 5)), SummedBernoulli) and head.event_shape == (1, 8, 8)
