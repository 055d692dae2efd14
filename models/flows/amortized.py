"""Amortised flow layers: a context h (the VAE encoder's features of x) sets every parameter of a layer.

    theta(h) = W h + c          (a linear head, P outputs: the layer's parameters, per example)
    f_{theta(h)}(z)             (the layer, with those parameters)

as in Rezende & Mohamed (2015, planar flows in a VAE) and van den Berg et al. (2018, Sylvester
flows): the encoder outputs the flow's parameters, one set per data point. ``condition(h)`` of an
:class:`AmortizedTransformModule` (a ``ConditionalTransformModule``) returns the layer with the
parameters of the contexts h (shape (..., C)); the parameters have the batch shape of h and
broadcast against the batch of z (importance samples add a leading dimension to z, not to h).

Subclasses say how many parameters their layer needs (``num_params``) and build the layer from a
(..., P) tensor of them (``transform``). The layers compute log |det J| in the pass that draws z,
so a posterior q(z | x) = f_{theta(h(x))} # N(mu(x), sigma(x)^2) scores its own samples without
inverting the flow (``models.vae_flows``).
"""
from __future__ import annotations

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch import nn

from core.errors import DGMError
from models.flows.base import FlowTransform


class AmortizedTransformModule(ConditionalTransformModule):
    """A flow layer whose P parameters are a linear function of a context: ``condition(h)`` -> layer."""

    domain = FlowTransform.domain
    codomain = FlowTransform.codomain
    bijective = True

    def __init__(self, dim: int, context_features: int):
        super().__init__()
        if dim < 1:
            raise DGMError(f"an amortised flow layer needs at least one coordinate, got {dim}")
        if context_features < 1:
            raise DGMError(f"an amortised flow layer needs a context of at least one feature, got {context_features}")
        self.dim, self.context_features = dim, context_features
        self.head = nn.Linear(context_features, self.num_params())

    def num_params(self) -> int:
        """P: the number of per-example parameters of the layer."""
        raise NotImplementedError

    def transform(self, params: torch.Tensor) -> FlowTransform:
        """The layer with parameters ``params`` (..., P)."""
        raise NotImplementedError

    def condition(self, context: torch.Tensor) -> FlowTransform:
        """The layer at the contexts h (..., C): parameters theta(h) = W h + c of shape (..., P)."""
        if context.shape[-1] != self.context_features:
            raise DGMError(f"{type(self).__name__} expects contexts of {self.context_features} features, "
                           f"got shape {tuple(context.shape)}")
        return self.transform(self.head(context))


def split_last(params: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Split (..., sum(sizes)) into tensors (..., size) along the last dimension."""
    return list(params.split(sizes, dim=-1))
