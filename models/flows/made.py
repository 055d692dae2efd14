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

import weakref
from typing import Any, Iterator

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch import nn
from torch.autograd.function import once_differentiable

from core.cpu_linear import linear
from core.errors import DGMError
from models.flows.conditioners import broadcast_context
from models.networks import ACTIVATIONS


class _MaskedGradient(torch.autograd.Function):
    """The identity on a weight whose masked entries are zero, with the gradient multiplied by the mask:
    the gradient of ``weight * mask`` bit for bit, without forming the product in the forward pass."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, mask: torch.Tensor, owner: Any) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.owner = owner
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        owner = ctx.owner()
        if owner is not None:
            owner._grad_masked = True
        return grad * mask, None, None


Block = tuple[int, int, int, int]  # rows r0:r1 of the layer use inputs c0:c1 (all others are masked)

BLOCKS = 8  # row blocks of a staircase mask


def staircase_blocks(mask: torch.Tensor, blocks: int = BLOCKS) -> list[Block] | None:
    """Row blocks of a MADE mask and the input columns each needs, when every row's kept inputs are a
    prefix (or every row's a suffix) of the inputs, as in natural and reversed orders: blocks of ~O/B
    rows, each with the longest prefix (suffix) of its rows. None when the mask is no staircase or the
    blocks would skip under a quarter of the products."""
    keep = mask != 0
    out_features, in_features = keep.shape
    counts = keep.sum(1)
    columns = torch.arange(in_features)
    if torch.equal(keep, columns[None, :] < counts[:, None]):
        prefix = True
    elif torch.equal(keep, columns[None, :] >= in_features - counts[:, None]):
        prefix = False
    else:
        return None
    bounds = torch.linspace(0, out_features, blocks + 1).round().long().tolist()
    plan = []
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        if r1 <= r0:
            continue
        extent = max(int(counts[r0:r1].max()), 1)
        plan.append((r0, r1, 0, extent) if prefix else (r0, r1, in_features - extent, in_features))
    used = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in plan)
    return plan if used <= 0.75 * out_features * in_features else None


class _StaircaseLinear(torch.autograd.Function):
    """y = x W^T + b for a weight that is zero outside ``plan``'s blocks and under the mask, computed block
    by block (about half the products of the full matrix for a MADE); the weight's gradient is masked."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor,
                plan: list[Block], owner: Any) -> torch.Tensor:
        ctx.save_for_backward(x, weight, mask)
        ctx.plan, ctx.owner, ctx.bias_dtype = plan, owner, bias.dtype
        return torch.cat([linear(x[..., c0:c1], weight[r0:r1, c0:c1], bias[r0:r1]) for r0, r1, c0, c1 in plan],
                         dim=-1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, mask = ctx.saved_tensors
        # in the weight's dtype (under autocast the forward's products ran in lower precision)
        x2, g2 = x.reshape(-1, x.shape[-1]).to(weight.dtype), grad.reshape(-1, grad.shape[-1]).to(weight.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = x2.new_zeros(x2.shape)
            for r0, r1, c0, c1 in ctx.plan:
                grad_x[:, c0:c1].addmm_(g2[:, r0:r1], weight[r0:r1, c0:c1])
            grad_x = grad_x.view(x.shape).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(weight)
            for r0, r1, c0, c1 in ctx.plan:
                block = grad_w[r0:r1, c0:c1]
                torch.mm(g2[:, r0:r1].t(), x2[:, c0:c1], out=block)
                block.mul_(mask[r0:r1, c0:c1])
            owner = ctx.owner()
            if owner is not None:
                owner._grad_masked = True
        if ctx.needs_input_grad[2]:
            grad_b = g2.sum(0).to(ctx.bias_dtype)
        return grad_x, grad_w, grad_b, None, None, None


# the MaskedLinear layers by id(weight), for the optimizer step hooks below
_MASKED_LAYERS: "weakref.WeakValueDictionary[int, MaskedLinear]" = weakref.WeakValueDictionary()


def _masked_layers(optimizer: torch.optim.Optimizer) -> Iterator[tuple["MaskedLinear", torch.Tensor]]:
    if not _MASKED_LAYERS:
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            layer = _MASKED_LAYERS.get(id(p))
            if layer is not None and layer.weight is p:
                yield layer, p


def _before_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    for layer, p in _masked_layers(optimizer):
        # the step keeps the masked entries zero iff they are zero now and so are their gradients
        layer._step_keeps_zeros = p._version == layer._zeroed_version and layer._grad_masked


def _after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    for layer, p in _masked_layers(optimizer):
        if layer._step_keeps_zeros:
            layer._zeroed_version = p._version
        layer._step_keeps_zeros = layer._grad_masked = False


register_optimizer_step_pre_hook(_before_step)
register_optimizer_step_post_hook(_after_step)


class MaskedLinear(nn.Linear):
    """y = x (W * M)^T + b with a fixed binary mask M (out_features, in_features).

    Speed (issue #18): the entries of W where M is 0 are kept at zero, so the forward pass uses W itself
    (no W * M product) and the backward multiplies the gradient by M (``_MaskedGradient``): values and
    gradients are those of W * M bit for bit. W is zeroed in place under M at construction and, before a
    forward pass, whenever it changed (its version counter) other than by an optimizer step on masked
    gradients from zeroed entries (which keeps them zero: every torch optimizer moves an entry only by
    its gradient, its state and its value). So loading a checkpoint saved by the old layer (with
    arbitrary values under the mask), ``copy_``/``randomize_``, or any other in-place edit of W gives
    the same function as W * M did; the state dict keys are unchanged. On CPU, staircase masks
    (``staircase_blocks``) are multiplied block by block (``_StaircaseLinear``), skipping the all-masked
    blocks: the same values and gradients up to the rounding of the changed summation order. Editing W in
    place between a forward pass and its backward raises torch's in-place error (W is saved, not W * M).
    """

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))
        self._grad_masked = self._step_keeps_zeros = False
        self._zeroed_version: int | None = None
        self._zero_masked_entries()
        _MASKED_LAYERS[id(self.weight)] = self

    def _zero_masked_entries(self) -> None:
        """W <- W * M in place unless W is known to be zero under M already."""
        if self.weight._version != self._zeroed_version:
            with torch.no_grad():
                self.weight.mul_(self.mask)
            self._zeroed_version = self.weight._version

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "MaskedLinear":
        # .to() / .cuda() / .double() may give W a new tensor: register it under its new id
        result = super()._apply(fn, *args, **kwargs)
        self._zeroed_version = None
        _MASKED_LAYERS[id(self.weight)] = self
        return result

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # copies and unpickled layers: re-register, zero again before use
        self._zeroed_version = None
        _MASKED_LAYERS[id(self.weight)] = self

    def blocks(self) -> list[Block] | None:
        """``staircase_blocks`` of the mask, recomputed when the mask buffer changes (a loaded state dict)."""
        key = (self.mask.data_ptr(), self.mask._version, self.mask.device)
        if getattr(self, "_blocks_key", None) != key:
            self._blocks = staircase_blocks(self.mask.cpu())
            self._blocks_key = key
        return self._blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._zero_masked_entries()
        # blocks on CPU only: on a GPU 8 small products per layer cost more launches than the skipped
        # multiply-adds save (not measured: no GPU was lent), so it keeps the one full product there
        plan = self.blocks() if x.device.type == "cpu" else None
        if plan is not None:
            return _StaircaseLinear.apply(x, self.weight, self.bias, self.mask, plan, weakref.ref(self))
        weight = self.weight
        if torch.is_grad_enabled() and weight.requires_grad:
            weight = _MaskedGradient.apply(weight, self.mask, weakref.ref(self))
        return linear(x, weight, self.bias)


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
        if isinstance(self.activation, nn.ReLU):  # on the layer's fresh output in place (issue #18)
            self.activation.inplace = True
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
