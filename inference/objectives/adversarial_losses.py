"""The GAN losses, as functions of the discriminator's outputs on real and generated images.

With d = D(x) a logit of P(real) (minimax, non-saturating) or a critic value (hinge, WGAN-GP),
real images x ~ p_data and generated ones G(z), z ~ N(0, I); every loss is a mean over the batch:

    minimax          L_D = -log s(d_real) - log(1 - s(d_fake)) = softplus(-d_real) + softplus(d_fake)
                     L_G = log(1 - s(d_fake)) = -softplus(d_fake)           (Goodfellow et al. 2014, eq. 1)
    non_saturating   L_D as minimax;  L_G = -log s(d_fake) = softplus(-d_fake)
    hinge            L_D = relu(1 - d_real) + relu(1 + d_fake);  L_G = -d_fake   (Lim & Ye 2017, Miyato 2018)
    wgan_gp          L_D = d_fake - d_real + lambda (||grad_x D(x_hat)||_2 - 1)^2,
                     x_hat = e x + (1 - e) G(z), e ~ U(0, 1) per example;  L_G = -d_fake  (Gulrajani 2017)

s is the logistic sigmoid. The minimax generator loss saturates early in training: when D rejects
the samples (d_fake << 0) its gradient dL_G/dd_fake = -s(d_fake) vanishes, while the
non-saturating one, -(1 - s(d_fake)), stays near -1 (Goodfellow et al. 2014, section 3).
For the two log losses the values are in nats per example.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from core.errors import DGMError


@dataclass(frozen=True)
class AdversarialLoss:
    """The two players' losses: ``discriminator(d_real, d_fake)`` and ``generator(d_fake)``, scalars."""

    name: str
    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator: Callable[[torch.Tensor], torch.Tensor]
    gradient_penalty: bool = False


def log_loss_discriminator(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of D: E[-log s(d_real)] + E[-log(1 - s(d_fake))] (nats)."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def minimax_generator(d_fake: torch.Tensor) -> torch.Tensor:
    """E[log(1 - s(d_fake))] (nats; saturates when D rejects the samples)."""
    return -F.softplus(d_fake).mean()


def non_saturating_generator(d_fake: torch.Tensor) -> torch.Tensor:
    """E[-log s(d_fake)] (nats)."""
    return F.softplus(-d_fake).mean()


def hinge_discriminator(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """E[max(0, 1 - d_real)] + E[max(0, 1 + d_fake)]."""
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def wasserstein_discriminator(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """E[d_fake] - E[d_real]: minus the critic's estimate of the Wasserstein-1 distance (penalty added apart)."""
    return d_fake.mean() - d_real.mean()


def critic_generator(d_fake: torch.Tensor) -> torch.Tensor:
    """-E[d_fake] (hinge and WGAN generators)."""
    return -d_fake.mean()


LOSSES: dict[str, AdversarialLoss] = {
    "minimax": AdversarialLoss("minimax", log_loss_discriminator, minimax_generator),
    "non_saturating": AdversarialLoss("non_saturating", log_loss_discriminator, non_saturating_generator),
    "hinge": AdversarialLoss("hinge", hinge_discriminator, critic_generator),
    "wgan_gp": AdversarialLoss("wgan_gp", wasserstein_discriminator, critic_generator, gradient_penalty=True),
}


def adversarial_loss(name: str) -> AdversarialLoss:
    """The loss called ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in LOSSES:
        raise DGMError(f"unknown GAN loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]


def gradient_penalty(discriminator: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, mix: torch.Tensor | None = None) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = e real + (1 - e) fake, e ~ U(0, 1) per example.

    ``real`` and ``fake`` are (B, C, H, W); the graph is kept (create_graph) so the penalty trains D.
    ``mix``: the draws e, (B, 1, 1, 1) (distributed training passes its own; None draws them here).
    """
    e = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype) \
        if mix is None else mix
    x_hat = (e * real + (1 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
