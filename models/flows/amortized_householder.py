"""Amortised Householder flow (Tomczak & Welling 2016): K reflections whose vectors come from the context.

The map of ``models.flows.householder`` (the same :func:`householder_forward`) with per-example
vectors v_1..v_K (..., K, D), a linear head of the context, broadcast against the batch of x:

    H_k = I - 2 v_k v_k^T / |v_k|^2,   _call: y = H_K ... H_1 x,   _inverse: x = H_1 ... H_K y
    log |det dy/dx| = 0

A diagonal Gaussian pushed through it is a Gaussian with a full covariance U diag(sigma^2) U^T,
U = H_K ... H_1 orthogonal: volume preserving, so log q(z | x) is that of the base sample. (Tomczak
and Welling compute v_{k+1} from v_k with a small network; here every v_k is a linear function of
the encoder's features, which spans the same per-example family.) Registered as the VAE posterior
family ``householder``: ``--flow-length L`` reflections in one layer.
"""
from __future__ import annotations

import torch

from models.flows.amortized import AmortizedTransformModule
from models.flows.householder import HOUSEHOLDER, check_reflections, unit_normals
from models.flows.registry import randomize_, register_transform
from models.flows.vae_families import LayerRequest, register_flow_family


class AmortizedHouseholder(AmortizedTransformModule):
    """K Householder reflections with vectors = linear head of the context (P = K D)."""

    maths = HOUSEHOLDER

    def __init__(self, dim: int, context_features: int, count: int = 1):
        check_reflections(count)
        self.count = count
        super().__init__(dim, context_features)

    def num_params(self) -> int:
        return self.count * self.dim

    def layer_params(self, params: torch.Tensor) -> tuple[torch.Tensor]:
        return (unit_normals(params.unflatten(-1, (self.count, self.dim))),)


register_transform("amortized_householder", AmortizedHouseholder,
                   lambda shape, ctx, gen: randomize_(AmortizedHouseholder(shape[0], ctx, 3), gen, 0.5),
                   conditional=True, volume_preserving=True,
                   description="Householder reflections whose vectors come from a context (VAE posteriors)")


def householder_layers(request: LayerRequest, options: None) -> list[AmortizedHouseholder]:
    """L reflections in one layer: the same map as L layers of one reflection, one head."""
    return [AmortizedHouseholder(request.latent_dim, request.context, request.length)]


register_flow_family("posterior", "householder", "amortized_householder", householder_layers,
                     description="Tomczak & Welling (2016): L reflections, v_k = linear(h) (volume preserving)")
