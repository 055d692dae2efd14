"""Amortised flow layers: a context h (the VAE encoder's features of x) sets every parameter of a layer.

    theta(h) = W h + c          (a linear head, P outputs: the layer's parameters, per example)
    f_{theta(h)}(z)             (the layer, with those parameters)

as in Rezende & Mohamed (2015, planar flows in a VAE) and van den Berg et al. (2018, Sylvester
flows): the encoder outputs the flow's parameters, one set per data point. ``condition(h)`` of an
:class:`AmortizedTransformModule` (a ``ConditionalTransformModule``) returns the layer with the
parameters of the contexts h (shape (..., C)); the parameters have the batch shape of h and
broadcast against the batch of z (importance samples add a leading dimension to z, not to h).

Subclasses give the layer family's maths (``maths``, the very functions its fixed-parameter layer
uses: ``models.flows.parametric``), how many raw parameters it needs (``num_params``) and how a
(..., P) tensor of them becomes the maths' parameters (``layer_params``). The layers compute
log |det J| in the pass that draws z, so a posterior q(z | x) = f_{theta(h(x))} # N(mu(x), sigma(x)^2)
scores its own samples without inverting the flow (``models.vae_flows``).
"""
from __future__ import annotations

from typing import Any

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch import nn

from core.errors import DGMError
from models.flows.base import FlowTransform
from models.flows.parametric import ContextLayer, LayerMaths


class AmortizedTransformModule(ConditionalTransformModule):
    """A flow layer whose P parameters are a linear function of a context: ``condition(h)`` -> layer."""

    domain = FlowTransform.domain
    codomain = FlowTransform.codomain
    bijective = True
    #: the layer family's maths, shared with its fixed-parameter layer
    maths: LayerMaths

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

    def layer_params(self, params: torch.Tensor) -> tuple[Any, ...]:
        """The maths' parameters theta from the head's outputs ``params`` (..., P)."""
        raise NotImplementedError

    def condition(self, context: torch.Tensor) -> ContextLayer:
        """The layer at the contexts h (..., C): parameters theta(h) = W h + c of shape (..., P)."""
        if context.shape[-1] != self.context_features:
            raise DGMError(f"{type(self).__name__} expects contexts of {self.context_features} features, "
                           f"got shape {tuple(context.shape)}")
        return ContextLayer(self.maths, self.layer_params(self.head(context)), type(self).__name__)


def split_last(params: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Split (..., sum(sizes)) into tensors (..., size) along the last dimension."""
    return list(params.split(sizes, dim=-1))
