"""MADE (Germain et al. 2015): a masked MLP whose output i depends only on inputs before i in an order.

Degrees. ``order[k]`` is the input with degree k + 1 (1..D). Hidden unit j of a layer of width H
gets degree m_j = round(linspace(1, D - 1, H))_j, so every degree 1..D-1 is present when
H >= D - 1 (with a context, m_j = round(linspace(1, D, H))_j - 1 in 0..D-1: the context has
degree 0 and reaches every unit). Connections are kept where

    input/hidden -> hidden:  m_out >= m_in          hidden -> output:  d_out > m_in

so output i (degree d_i) sees exactly the inputs of smaller degree: the Jacobian of every output
block with respect to x is strictly triangular in the order. ``num_params`` output blocks of D
values each (shift, raw log-scale) follow one another, the layout of Pyro's ``AutoRegressiveNN``
with ``param_dims=[1, 1]``; the masks equal Pyro's for the same order (checked in the oracle tests).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import DGMError
from models.flows.conditioners import broadcast_context
from models.networks import ACTIVATIONS


class MaskedLinear(nn.Linear):
    """y = x (W * M)^T + b with a fixed binary mask M (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def input_degrees(order: torch.Tensor) -> torch.Tensor:
    """deg[order[k]] = k + 1: the degree of each input coordinate, (D,)."""
    degrees = torch.empty(order.shape[0], dtype=torch.long)
    degrees[order] = torch.arange(1, order.shape[0] + 1)
    return degrees


def hidden_degrees(dim: int, width: int, has_context: bool) -> torch.Tensor:
    """Degrees of a hidden layer of ``width`` units, (width,) (see the module docstring)."""
    if has_context:
        return torch.linspace(1, dim, width).round().long() - 1
    return torch.linspace(1, dim - 1, width).round().long()


def made_masks(order: torch.Tensor, hidden: tuple[int, ...], num_params: int,
               context_features: int = 0) -> list[torch.Tensor]:
    """The masks (out, in) of each layer: inputs [context, x] -> hidden... -> num_params * D outputs."""
    dim = order.shape[0]
    deg_in = torch.cat([torch.zeros(context_features, dtype=torch.long), input_degrees(order)])
    degs = [hidden_degrees(dim, h, context_features > 0) for h in hidden]
    masks = [degs[0][:, None] >= deg_in[None, :]]
    masks += [later[:, None] >= earlier[None, :] for earlier, later in zip(degs[:-1], degs[1:])]
    deg_out = input_degrees(order).repeat(num_params)
    masks.append(deg_out[:, None] > degs[-1][None, :])
    return masks


def min_hidden_units(features: int, has_context: bool) -> int:
    """The fewest units a hidden layer needs so that every degree is represented: D with a context
    (degrees 0..D-1), D - 1 without (degrees 1..D-1)."""
    return features if has_context else features - 1


class MADE(nn.Module):
    """Autoregressive network x (..., D) [, context (..., C)] -> ``num_params`` tensors (..., D)."""

    def __init__(self, features: int, hidden: tuple[int, ...], num_params: int = 2, order: torch.Tensor | None = None,
                 context_features: int = 0, activation: str = "relu", zero_init: bool = True):
        super().__init__()
        if features < 2 and not context_features:
            raise DGMError("MADE needs at least 2 features (one feature has nothing to condition on)")
        if not hidden:
            raise DGMError("MADE needs at least one hidden layer")
        needed = min_hidden_units(features, context_features > 0)
        if min(hidden) < needed:
            raise DGMError(f"MADE hidden layers need at least {needed} units for {features} features "
                           f"(every degree must be represented), got {tuple(hidden)}")
        order = torch.arange(features) if order is None else torch.as_tensor(order, dtype=torch.long)
        if sorted(order.tolist()) != list(range(features)):
            raise DGMError(f"MADE order must be a permutation of 0..{features - 1}")
        self.features, self.num_params, self.context_features = features, num_params, context_features
        self.register_buffer("order", order.clone())
        masks = made_masks(order, tuple(hidden), num_params, context_features)
        sizes = (features + context_features, *hidden, num_params * features)
        self.layers = nn.ModuleList(MaskedLinear(a, b, m) for a, b, m in zip(sizes[:-1], sizes[1:], masks))
        self.activation = ACTIVATIONS[activation]()
        if zero_init:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if self.context_features:
            if context is None:
                raise ValueError("this MADE needs a context")
            x, context = broadcast_context(x, context)
            x = torch.cat([context, x], dim=-1)
        h = x
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return tuple(self.layers[-1](h).split(self.features, dim=-1))
