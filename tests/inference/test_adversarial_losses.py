"""The GAN losses: closed-form values, the vanishing minimax gradient, the optimal discriminator, the penalty."""
from __future__ import annotations

import math

import pytest
import torch

from core.errors import DGMError
from inference.objectives.adversarial_losses import LOSSES, adversarial_loss, gradient_penalty


def test_log_losses_are_the_binary_cross_entropies() -> None:
    d_real, d_fake = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([-0.5, 0.7, 0.1])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected_d = bce(d_real, torch.ones(3)) + bce(d_fake, torch.zeros(3))
    for name in ("minimax", "non_saturating"):
        assert torch.allclose(LOSSES[name].discriminator(d_real, d_fake), expected_d)
    s = torch.sigmoid(d_fake)
    assert torch.allclose(LOSSES["minimax"].generator(d_fake), torch.log(1 - s).mean())
    assert torch.allclose(LOSSES["non_saturating"].generator(d_fake), -torch.log(s).mean())


def test_hinge_and_wasserstein_values() -> None:
    d_real, d_fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # relu(1 - d_real) = [0, 0.5], relu(1 + d_fake) = [0, 1.5]
    assert float(LOSSES["hinge"].discriminator(d_real, d_fake)) == pytest.approx(0.25 + 0.75)
    assert float(LOSSES["hinge"].generator(d_fake)) == pytest.approx(0.75)
    assert float(LOSSES["wgan_gp"].discriminator(d_real, d_fake)) == pytest.approx(-0.75 - 1.25)
    assert LOSSES["wgan_gp"].gradient_penalty and not LOSSES["hinge"].gradient_penalty


def test_minimax_generator_gradient_vanishes_where_non_saturating_does_not() -> None:
    """Early in training D rejects samples (d_fake << 0): d/dd of log(1 - s(d)) is -s(d) -> 0,
    while d/dd of -log s(d) is s(d) - 1 -> -1."""
    d_fake = torch.tensor([-8.0], requires_grad=True)
    (g_minimax,) = torch.autograd.grad(LOSSES["minimax"].generator(d_fake), d_fake)
    (g_ns,) = torch.autograd.grad(LOSSES["non_saturating"].generator(d_fake), d_fake)
    assert abs(float(g_minimax)) == pytest.approx(torch.sigmoid(torch.tensor(-8.0)).item(), rel=1e-4)
    assert abs(float(g_minimax)) < 1e-3 and abs(float(g_ns)) > 0.99
    assert float(g_minimax) < 0 and float(g_ns) < 0  # both push d_fake up: same direction, different strength


def test_discriminator_loss_is_minimised_by_the_density_ratio() -> None:
    """The minimax D loss is minimised by D*(x) = p_data / (p_data + p_g): for N(1, 1) against N(-1, 1)
    the optimal logit is log N(x; 1, 1) - log N(x; -1, 1) = 2x, which a linear D must find."""
    torch.manual_seed(0)
    real, fake = torch.randn(4000) + 1, torch.randn(4000) - 1
    w = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=50, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = LOSSES["minimax"].discriminator(w[0] * real + w[1], w[0] * fake + w[1])
        loss.backward()
        return loss

    optimizer.step(closure)
    slope, offset = w.detach().tolist()
    assert slope == pytest.approx(2.0, abs=0.2)  # the maximum-likelihood slope's standard error is ~0.06
    assert offset == pytest.approx(0.0, abs=0.15)


@pytest.mark.parametrize("norm", [1.0, 3.0])
def test_gradient_penalty_of_a_linear_critic(norm: float) -> None:
    """D(x) = w.x has gradient w everywhere: the penalty is (|w| - 1)^2 wherever x_hat falls."""
    torch.manual_seed(0)
    w = torch.randn(1, 2, 3, 3)
    w = w / w.norm() * norm

    def critic(x: torch.Tensor) -> torch.Tensor:
        return (x * w).flatten(1).sum(1)

    real, fake = torch.rand(5, 1, 2, 3, 3).squeeze(1), torch.rand(5, 2, 3, 3)
    assert float(gradient_penalty(critic, real, fake)) == pytest.approx((norm - 1) ** 2, abs=1e-5)


def test_unknown_loss_is_a_one_line_error() -> None:
    with pytest.raises(DGMError, match="unknown GAN loss 'lsgan'; choose one of minimax, non_saturating, hinge"):
        adversarial_loss("lsgan")
    assert math.isclose(float(adversarial_loss("hinge").generator(torch.ones(2))), -1.0)
