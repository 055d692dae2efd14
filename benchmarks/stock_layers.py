"""Copies of our networks as their peers would write them: every ``core.cpu_linear.Linear`` a stock ``nn.Linear``.

Our MLPs use ``core.cpu_linear.Linear`` (float32 CPU products on oneDNN where torch's MKL is slow); plain
PyTorch, pythae, nflows and normflows call ``nn.Linear``. The peer contenders of ``benchmarks/peers.py``
get our weights through :func:`stock_copy`, so they time what their own code runs, and ours keeps its layers.
"""
from __future__ import annotations

import copy

from torch import nn

from core.cpu_linear import Linear


def stock_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with each ``Linear`` replaced by an ``nn.Linear`` holding the same parameters."""
    twin = copy.deepcopy(module)
    for parent in twin.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, Linear):
                stock = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                  device=child.weight.device, dtype=child.weight.dtype)
                stock.load_state_dict(child.state_dict())
                stock.train(child.training)
                setattr(parent, name, stock)
    return twin
