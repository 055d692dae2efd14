"""Conditioner networks: the functions that compute a flow layer's parameters from its inputs.

A conditioner maps the conditioning part of x (..., d_in), and optionally a context (..., d_ctx),
to ``num_params`` tensors of shape (..., d_out) (e.g. shift and raw log-scale of the transformed
coordinates). The last layer starts at zero, so a fresh coupling or autoregressive layer is the
identity map and a deep flow starts as the base distribution (stable early training).
Output layout: the outputs are consecutive blocks of d_out values, ``(block_1, block_2, ...)``,
the layout of Pyro's ``DenseNN(param_dims=[d_out, d_out])`` (the oracle tests copy its weights).
"""
from __future__ import annotations

import torch
from torch import nn

from models.networks import mlp


def broadcast_context(x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand x (..., d) and context (..., c) to their common batch shape."""
    batch = torch.broadcast_shapes(x.shape[:-1], context.shape[:-1])
    return x.expand(*batch, x.shape[-1]), context.expand(*batch, context.shape[-1])


class MLPConditioner(nn.Module):
    """[x, context] (..., d_in + d_ctx) -> MLP -> ``num_params`` tensors (..., d_out)."""

    def __init__(self, in_features: int, out_features: int, hidden: tuple[int, ...], num_params: int = 2,
                 context_features: int = 0, activation: str = "relu", zero_init: bool = True):
        super().__init__()
        self.out_features = out_features
        self.num_params = num_params
        self.context_features = context_features
        self.net = mlp(in_features + context_features, tuple(hidden), num_params * out_features, activation)
        for layer in self.net:  # ReLU on the linear layer's fresh output in place (issue #18): same values
            if isinstance(layer, nn.ReLU):
                layer.inplace = True
        if zero_init:
            last = self.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if self.context_features:
            if context is None:
                raise ValueError("this conditioner needs a context")
            x, context = broadcast_context(x, context)
            x = torch.cat([x, context], dim=-1)
        return tuple(self.net(x).split(self.out_features, dim=-1))


class ContextBound(nn.Module):
    """A conditional network with its context fixed: ``net(x, context)`` as a function of x alone.

    ``ConditionalTransformModule.condition(context)`` wraps its network in this, and the returned
    transform uses it like an ordinary conditioner (the network's parameters are shared, not copied).
    """

    def __init__(self, net: nn.Module, context: torch.Tensor):
        super().__init__()
        self.net = net
        self.context = context

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net(x, self.context)
