"""The elementwise part of an affine flow layer, with its soft-bounded log-scale, as one autograd node.

With s = c tanh(r / c) the soft bound of the raw conditioner output r (``models.flows.log_scale``,
c = high for r >= 0 and -low for r < 0), t the shift and v the transformed coordinates:

    forward  (sampling direction):  out = v e^{s} + t
    inverse  (density direction):   out = (v - t) e^{-s}
    ladj = sum_i s_i                (log |det| of the forward map, summed over the last dimension)

Gradients (g = dL/d out, g_l = dL/d ladj broadcast over the last dimension, q = tanh(r / c), computed as
2 sigmoid(2 r / c) - 1 like the bound itself, so that ds/dr = 1 - q^2):

    forward:  dL/dv = g e^{s},    dL/dt = g,           dL/dr = (g_l + g v e^{s}) (1 - q^2)
    inverse:  dL/dv = g e^{-s},   dL/dt = -g e^{-s},   dL/dr = (g_l - g out) (1 - q^2)

Composed from torch operations, these take about ten elementwise kernels and as many autograd nodes
forward and backward per layer; :class:`SoftAffineUpdate` computes the same values (the same operations in
the same order: bit for bit) and writes the gradient out in five kernels (issue #18: about 1% of a RealNVP
training step). The gradients equal the composed ones to float32 rounding (the composed gradient of
c tanh(r / c) multiplies by c and divides by it again). Where a graph of the backward is recorded (double
backward: Hessian-vector products, gradient penalties) the backward differentiates the composed formula,
so higher derivatives are those of :func:`composed_affine_update`.
"""
from __future__ import annotations

import torch

from models.flows.log_scale import bound_log_scale, soft_bound_scale


def composed_affine_update(value: torch.Tensor, shift: torch.Tensor, raw: torch.Tensor, low: float, high: float,
                           bound: str, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, ladj) of the module docstring from torch operations (any bound, broadcasting shapes)."""
    log_scale = bound_log_scale(raw, low, high, bound)
    out = (value - shift) * (-log_scale).exp() if inverse else value * log_scale.exp() + shift
    return out, log_scale.sum(-1)


class SoftAffineUpdate(torch.autograd.Function):
    """(out, ladj) of the module docstring for the soft bound, value, shift and raw of one shape."""

    # forward(ctx, ...), not setup_context: that binds the arguments with inspect.signature on every call
    @staticmethod
    def forward(ctx, value: torch.Tensor, shift: torch.Tensor, raw: torch.Tensor, low: float, high: float,
                inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # the operations of bound_log_scale and composed_affine_update, in their order (same values), in place
        log_scale = soft_bound_scale(raw, low, high)
        q = torch.sigmoid_((raw / log_scale).mul_(2)).mul_(2).sub_(1)  # tanh(r / c) as 2 sigmoid(2 r / c) - 1
        log_scale.mul_(q)
        if inverse:
            scale = log_scale.neg().exp_()
            out = (value - shift).mul_(scale)
            product = out
        else:
            scale = log_scale.exp()
            product = value * scale
            out = product + shift
        ctx.inverse, ctx.low, ctx.high = inverse, low, high
        ctx.save_for_backward(value, shift, raw, scale, product, q)
        return out, log_scale.sum(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, grad_ladj: torch.Tensor):
        value, shift, raw, scale, product, q = ctx.saved_tensors
        need_value, need_shift, need_raw = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the composed formula
            return SoftAffineUpdate._composed_backward(ctx, value, shift, raw, grad, grad_ladj)
        grad_value = grad_shift = grad_raw = None
        if need_value or (need_shift and ctx.inverse):
            grad_value = grad * scale
        if need_shift:
            grad_shift = grad_value.neg() if ctx.inverse else grad
        if need_raw:
            # g_l + g v e^s (forward, product = v e^s) or g_l - g out (inverse, product = out), times 1 - q^2
            grad_raw = torch.addcmul(grad_ladj.unsqueeze(-1), grad, product, value=-1.0 if ctx.inverse else 1.0)
            grad_raw.mul_(torch.addcmul(torch.ones_like(q), q, q, value=-1.0))
        return (grad_value if need_value else None), grad_shift, grad_raw, None, None, None

    @staticmethod
    def _composed_backward(ctx, value: torch.Tensor, shift: torch.Tensor, raw: torch.Tensor, grad: torch.Tensor,
                           grad_ladj: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs = (value, shift, raw)
        wanted = [t for t, need in zip(inputs, ctx.needs_input_grad[:3]) if need]
        out, ladj = composed_affine_update(value, shift, raw, ctx.low, ctx.high, "soft", ctx.inverse)
        # ladj does not depend on the value: with only the value wanted it has no graph
        pairs = [(o, g) for o, g in ((out, grad), (ladj, grad_ladj)) if o.requires_grad]
        found = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True,
                                         allow_unused=True))
        return (*(next(found) if need else None for need in ctx.needs_input_grad[:3]), None, None, None)


def affine_update(value: torch.Tensor, shift: torch.Tensor, raw: torch.Tensor, low: float, high: float, bound: str,
                  inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, ladj) of an affine layer (module docstring): value, shift, raw (..., d) -> out (..., d), ladj (...).

    The soft bound on operands of one shape runs as :class:`SoftAffineUpdate`; the clamp bound and
    broadcasting operands (a context that widens the batch) as :func:`composed_affine_update`."""
    if bound == "soft" and value.shape == shift.shape == raw.shape and value.dim() > 0:
        return SoftAffineUpdate.apply(value, shift, raw, low, high, inverse)
    return composed_affine_update(value, shift, raw, low, high, bound, inverse)
