"""The naive sampler multiplies W * M once per call (``masks_applied_once``) and draws exactly what the
per-pass product drew; the frozen product can never reach a training step."""
from __future__ import annotations

import copy

import pytest
import torch

from models.arm.masked_conv import MaskedConv2d, masks_applied_once
from models.arm.sampling import gumbel_noise, sample_naive
from tests.models.arm.arm_testing import ARMS, build


def per_pass_reference(model, n: int, gumbel: torch.Tensor, record: list) -> torch.Tensor:
    """The former naive sampler: W * M recomputed in each of the D full forward passes."""
    _, height, width = model.spec.shape
    images = next(model.parameters()).new_zeros(n, *model.spec.shape)
    with torch.no_grad():
        for i in range(height * width):
            r, c = divmod(i, width)
            log_probs = model.level_log_probs(model(images)[:, :, r, c])
            record.append(log_probs)
            images[:, 0, r, c] = (log_probs + gumbel[:, i]).argmax(-1).to(images.dtype)
    return images


def loss_and_grads(model, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    loss = -model.log_prob(x).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)  # some heads leave one unused
    return loss.detach(), [torch.zeros(()) if g is None else g for g in grads]


@pytest.mark.parametrize("name", ARMS)
def test_masks_once_draws_the_same_images_and_leaves_training_unchanged(name):
    model = build(name, "digits", likelihood="categorical", dtype=torch.float32, seed=4)
    untouched = copy.deepcopy(model)
    spec = model.spec
    noise = gumbel_noise(3, spec.dim, spec.levels, generator=torch.Generator().manual_seed(5))
    new_steps, old_steps = [], []
    new = sample_naive(model, 3, gumbel=noise, record=new_steps)
    old = per_pass_reference(untouched, 3, noise, old_steps)
    assert torch.equal(new, old)
    assert torch.equal(torch.stack(new_steps), torch.stack(old_steps))  # bit for bit, every conditional
    assert all(m._frozen is None for m in model.modules() if isinstance(m, MaskedConv2d))
    # after sampling: the same training loss and gradients as a copy that never sampled
    x = torch.randint(0, spec.levels, (2, *spec.shape)).float()
    (loss, grads), (ref_loss, ref_grads) = loss_and_grads(model, x), loss_and_grads(untouched, x)
    assert torch.equal(loss, ref_loss)
    assert all(torch.equal(g, r) for g, r in zip(grads, ref_grads))


def test_a_frozen_product_is_never_used_with_gradients_or_after_the_weight_changes():
    model = build("pixelcnn", "digits", likelihood="categorical", dtype=torch.float32, seed=6)
    layer = next(m for m in model.modules() if isinstance(m, MaskedConv2d))
    x = torch.randint(0, 17, (2, *model.spec.shape)).float()
    with masks_applied_once(model):
        frozen = layer._frozen[0]
        with torch.no_grad():
            assert layer.masked_weight() is frozen
        # with gradients on, the product is fresh and the gradient reaches W (a training step inside the context)
        assert layer.masked_weight() is not frozen
        loss = -model.log_prob(x).sum()
        loss.backward()
        assert layer.conv.weight.grad is not None and layer.conv.weight.grad.abs().sum() > 0
        torch.optim.Adam(model.parameters(), lr=0.1).step()  # W changes in place: its version counter moves
        with torch.no_grad():
            fresh = layer.masked_weight()
        assert fresh is not frozen
        assert torch.equal(fresh, layer.conv.weight * layer.mask)
    assert layer._frozen is None
