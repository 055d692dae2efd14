"""The K-sample importance-weighted bound (Burda et al. 2016) as a training objective.

    L_K(x) = E[ log (1/K) sum_k p(x, z_k) / q(z_k | x) ],  z_1..z_K ~ q(z | x)

computed per example (unlike Pyro's ``RenyiELBO(alpha=0)``, which forms one bound for the whole
batch and so coincides with this only for a batch of one). L_1 is the ELBO; L_K rises to log p(x).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from inference.objectives.importance import log_weights


class IWAE_ELBO:
    """Negative sum over the batch of L_K(x_n), reparameterised gradients through all K samples.

    Same calling convention as Pyro's ELBOs (``loss``, ``differentiable_loss``, ``loss_and_grads``).
    """

    def __init__(self, num_particles: int = 5, max_plate_nesting: int = 1):
        self.num_particles = num_particles
        self.max_plate_nesting = max_plate_nesting
        self.components: dict[str, torch.Tensor] = {}

    def per_example_bound(self, model: Any, guide: Any, x: torch.Tensor) -> torch.Tensor:
        """L_K(x_n) for each example: shape (N,), differentiable."""
        log_w = log_weights(model, guide, x, self.num_particles, max_plate_nesting=self.max_plate_nesting)
        return torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)

    def differentiable_loss(self, model: Any, guide: Any, x: torch.Tensor) -> torch.Tensor:
        bound = self.per_example_bound(model, guide, x).sum()
        self.components = {"iwae": bound.detach()}
        return -bound

    def loss(self, model: Any, guide: Any, x: torch.Tensor) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, x))

    def loss_and_grads(self, model: Any, guide: Any, x: torch.Tensor) -> float:
        loss = self.differentiable_loss(model, guide, x)
        loss.backward()
        return float(loss.detach())
