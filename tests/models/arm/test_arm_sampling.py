"""The cached sampler computes the same conditionals as the naive one: in float64, driven by the same
pre-drawn Gumbel noise, their level log-probabilities agree at every step and the images are identical.
The conditionals it computes are also those of the one-pass log p(x) (teacher forcing)."""
from __future__ import annotations

import pytest
import torch

from data.specs import DATASETS
from models.arm.sampling import gumbel_noise, sample_cached, sample_naive
from tests.models.arm.arm_testing import ARMS, build

CASES = [(name, dataset, head) for name in ARMS
         for dataset, head in [("binarized_digits", "auto"), ("digits", "categorical"), ("digits", "logistic_mixture")]]


def _draw_both(model, n: int, y: torch.Tensor | None = None, mean: bool = False):
    spec = model.spec
    noise = gumbel_noise(n, spec.dim, spec.levels, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    naive_steps, cached_steps = [], []
    naive = sample_naive(model, n, y=y, gumbel=noise, record=naive_steps, mean=mean)
    cached = sample_cached(model, n, y=y, gumbel=noise, record=cached_steps, mean=mean)
    return naive, cached, torch.stack(naive_steps), torch.stack(cached_steps)


@pytest.mark.parametrize("name,dataset,head", CASES)
def test_cached_and_naive_samplers_agree_step_by_step(name, dataset, head):
    model = build(name, dataset, likelihood=head, seed=3)
    naive, cached, naive_steps, cached_steps = _draw_both(model, 4)
    assert naive_steps.shape == (64, 4, DATASETS[dataset].levels)
    assert torch.allclose(naive_steps, cached_steps, rtol=0, atol=1e-11)
    assert torch.equal(naive, cached)
    assert naive.unique().numel() > 1  # the draws are not degenerate
    # teacher forcing: the sampler's conditionals at the drawn pixels sum to the one-pass log p(x)
    chosen = naive_steps.gather(2, naive.flatten(1).T.long()[:, :, None])[:, :, 0]  # (64, n)
    assert torch.allclose(chosen.sum(0), model.log_prob(naive).detach(), atol=1e-10)


def test_samplers_agree_for_the_class_conditional_model_and_labels_matter():
    model = build("gated_pixelcnn", "digits", num_classes=3, seed=2)
    y = torch.tensor([0, 1, 2])
    naive, cached, naive_steps, cached_steps = _draw_both(model, 3, y=y)
    assert torch.allclose(naive_steps, cached_steps, rtol=0, atol=1e-11)
    assert torch.equal(naive, cached)
    _, _, other_steps, _ = _draw_both(model, 3, y=torch.tensor([1, 2, 0]))
    assert not torch.allclose(other_steps[0], naive_steps[0])  # the first pixel already depends on the class


def test_conditional_means_agree_and_lie_in_range():
    model = build("pixelcnn", "digits", seed=4)
    naive, cached, _, _ = _draw_both(model, 2, mean=True)
    assert torch.allclose(naive, cached, atol=1e-11)
    assert naive.min() >= 0 and naive.max() <= 16 and not torch.equal(naive, naive.round())


@pytest.mark.parametrize("name", ARMS)
def test_sample_uses_the_cached_sampler_and_returns_valid_images(name):
    model = build(name, "digits", dtype=torch.float32, seed=5)
    torch.manual_seed(0)
    images = model.sample(5)
    assert images.shape == (5, 1, 8, 8) and images.dtype == torch.float32
    model.check_data(images)  # integer levels 0..16
    torch.manual_seed(0)
    assert torch.equal(images, sample_cached(model, 5))
    assert model.sample(3, mean=True).shape == (3, 1, 8, 8)
