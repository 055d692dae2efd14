"""Every likelihood head is a distribution over a pixel's levels (sums to 1), and every ARM is a
distribution over whole images: sum_x p(x) = 1 over all images of a tiny image space."""
from __future__ import annotations

import itertools

import pytest
import torch

from data.specs import DATASETS, DatasetSpec
from tests.models.arm.arm_testing import ARMS, build

HEADS = [("binarized_digits", "bernoulli", 1), ("binarized_digits", "categorical", 1),
         ("binarized_digits", "logistic_mixture", 3), ("digits", "categorical", 1),
         ("digits", "logistic_mixture", 1), ("digits", "logistic_mixture", 5), ("mnist", "categorical", 1),
         ("mnist", "logistic_mixture", 5)]


@pytest.mark.parametrize("dataset,head,components", HEADS)
def test_each_head_sums_to_one_over_a_pixels_levels(dataset, head, components):
    model = build("pixelcnn", dataset, likelihood=head, mixture_components=components)
    levels = DATASETS[dataset].levels
    g = torch.Generator().manual_seed(0)
    params = torch.randn(50, model.params_per_pixel, generator=g, dtype=torch.float64) * 4  # far from the init
    log_probs = model.level_log_probs(params)  # (50, L)
    assert log_probs.shape == (50, levels)
    assert torch.allclose(log_probs.logsumexp(-1), torch.zeros(50, dtype=torch.float64), atol=1e-12)
    # the per-level table is the head's own log-probability of each level
    values = torch.randint(0, levels, (50,), generator=g).double()
    image_params = params[:, :, None, None]
    direct = model.observation(image_params).base_dist.log_prob(values[:, None, None, None])[:, 0, 0, 0]
    assert torch.allclose(log_probs.gather(1, values.long()[:, None])[:, 0], direct, atol=1e-12)


def _all_images(spec: DatasetSpec) -> torch.Tensor:
    grid = itertools.product(range(spec.levels), repeat=spec.dim)
    return torch.tensor(list(grid), dtype=torch.float64).reshape(-1, *spec.shape)


TINY_BINARY = DatasetSpec("tiny_binary", (1, 2, 3), 2, (1, 1, 1), "all 64 binary 2x3 images")
TINY_3LEVEL = DatasetSpec("tiny_3level", (1, 2, 2), 3, (1, 1, 1), "all 81 3-level 2x2 images")


@pytest.mark.parametrize("name", ARMS)
@pytest.mark.parametrize("spec,head", [(TINY_BINARY, "auto"), (TINY_3LEVEL, "categorical"),
                                       (TINY_3LEVEL, "logistic_mixture")], ids=["bernoulli", "categorical", "mixture"])
def test_model_is_normalised_over_all_images(name, spec, head):
    """sum over every image of exp(log p(x)) = 1: holds only if each conditional ignores the pixel it scores
    and the ones after it (a non-causal network would give a sum other than 1)."""
    options = dict(first_kernel=3) if name != "causal_conv1d" else {}
    model = build(name, spec, likelihood=head, **options)
    images = _all_images(spec)
    with torch.no_grad():
        total = model.log_prob(images).logsumexp(0).exp()
    assert abs(float(total) - 1.0) < 1e-10


@torch.no_grad()
def test_class_conditional_model_is_normalised_for_each_class():
    model = build("gated_pixelcnn", TINY_BINARY, first_kernel=3, num_classes=2)
    images = _all_images(TINY_BINARY)
    for label in (0, 1):
        y = torch.full((images.shape[0],), label)
        assert abs(float(model.log_prob(images, y).logsumexp(0).exp()) - 1.0) < 1e-10
    y0, y1 = torch.zeros(images.shape[0], dtype=torch.long), torch.ones(images.shape[0], dtype=torch.long)
    assert not torch.allclose(model.log_prob(images, y0), model.log_prob(images, y1))  # the label matters
