"""The Bernoulli head's log-probability: summed before the sign flips (one pass fewer over the pixels), the same
values and gradients bit for bit as torch's ``Bernoulli(logits).to_event(3)``, and it keeps its type when Pyro's
plates expand it."""
from __future__ import annotations

import pyro.distributions as dist
import torch

from data.specs import DATASETS
from models.likelihoods import LIKELIHOODS, SummedBernoulli


def test_summed_bernoulli_equals_torchs_bit_for_bit_in_value_and_gradient():
    spec = DATASETS["binarized_digits"]
    torch.manual_seed(0)
    logits = (3 * torch.randn(7, 5, 1, 8, 8)).requires_grad_(True)
    x = (torch.rand(5, 1, 8, 8) < 0.4).float()
    ours = LIKELIHOODS["bernoulli"].distribution(logits, spec)
    torchs = dist.Bernoulli(logits=logits, validate_args=False).to_event(3)
    value, reference = ours.log_prob(x), torchs.log_prob(x)
    assert torch.equal(value, reference) and value.shape == (7, 5)
    (grad,) = torch.autograd.grad(value.sum(), logits)
    (grad_ref,) = torch.autograd.grad(reference.sum(), logits)
    assert torch.equal(grad, grad_ref)
    assert isinstance(ours.expand((3, 7, 5)), SummedBernoulli) and ours.event_shape == (1, 8, 8)
