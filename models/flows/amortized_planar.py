"""Amortised planar flow (Rezende & Mohamed 2015, section 4): u, w, b of each example from its context.

The map of ``models.flows.planar`` (the same :func:`planar_forward`) with per-example parameters
u, w (..., D) and b (...), a linear head of the context, broadcast against the batch of x:

    y = x + u_hat tanh(w^T x + b),   log |det dy/dx| = log |1 + (1 - tanh^2(w^T x + b)) w^T u_hat|

No closed-form inverse (refused); a posterior only scores the samples it drew, from the cache.
Registered as the VAE posterior family ``planar`` (``--posterior-flow planar``): L layers.
"""
from __future__ import annotations

import torch

from models.flows.amortized import AmortizedTransformModule, split_last
from models.flows.planar import PLANAR
from models.flows.registry import randomize_, register_transform
from models.flows.vae_families import LayerRequest, register_flow_family


class AmortizedPlanar(AmortizedTransformModule):
    """Planar layer with u, w, b = linear head of the context (P = 2 D + 1)."""

    maths = PLANAR

    def num_params(self) -> int:
        return 2 * self.dim + 1

    def layer_params(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u, w, b = split_last(params, [self.dim, self.dim, 1])
        return u, w, b.squeeze(-1)


register_transform("amortized_planar", AmortizedPlanar,
                   lambda shape, ctx, gen: randomize_(AmortizedPlanar(shape[0], ctx), gen, 0.5),
                   closed_form_inverse=False, conditional=True,
                   description="planar layer whose u, w, b come from a context (VAE posteriors)")


def planar_layers(request: LayerRequest, options: None) -> list[AmortizedPlanar]:
    """L planar layers, each with its own head."""
    return [AmortizedPlanar(request.latent_dim, request.context) for _ in range(request.length)]


register_flow_family("posterior", "planar", "amortized_planar", planar_layers,
                     description="Rezende & Mohamed (2015): u, w, b = linear(h)")
