"""log Bernoulli(x | sigmoid(l)) summed over the pixels, without ``log1p``: the likelihood of every binary head.

    log p(x | l) = sum_d [x_d l_d - softplus(l_d)],  softplus(l) = max(l, 0) + log(1 + exp(-|l|))

(the same function as ``-binary_cross_entropy_with_logits(l, x)``, for any x in [0, 1]). Why a function of
our own: torch's CPU ``log1p`` (inside ``softplus`` and ``binary_cross_entropy_with_logits``) is scalar code,
~16 ns a pixel on one thread, where ``exp`` and ``log`` are vectorised (~1-2 ns). Written with ``log(1 + e)``,
e = exp(-|l|) in (0, 1], in place on one buffer (``core.vectorised_log1p``), the per-pixel term costs a
fifth as much; at a VAE's
decoder output that is a third of importance sampling at K = 1000 and a tenth of a training step
(``benchmarks/peers.py``). The absolute error of ``log(1 + e)`` against ``log1p(e)`` is at most the rounding
of 1 + e, 2^-24 ~ 6e-8 nats a pixel; the tests bound the sum's error against float64.

The gradient is written out, d/dl = x - sigmoid(l) and d/dx = l (what torch's own backward computes), so it
is exact at l = 0 (where the kinks of max and |.| would give autograd a one-sided answer) and costs one
vectorised ``sigmoid``. Shapes: ``logits`` and ``value`` broadcast to (..., D_1, ..., D_e); the result is
(...,), summed over the last ``event_dims`` dimensions, float32 for half-precision logits (like torch's
autocast of the cross-entropy).
"""
from __future__ import annotations

from typing import Any

import torch

from core.vectorised_log1p import log1p_exp_neg_abs


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """float32 for half-precision logits (the sum of 784 terms needs it), else their own dtype."""
    return torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype


class _BernoulliLogLikelihood(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, value: torch.Tensor, event_dims: int) -> torch.Tensor:
        dtype = _compute_dtype(logits)
        l, x = logits.to(dtype), value.to(dtype)
        out = torch.mul(x, l)  # x l - log(1 + exp(-|l|)) - max(l, 0), in place
        buffer = log1p_exp_neg_abs(l)
        out.sub_(buffer)
        out.sub_(torch.clamp_min(l, 0, out=buffer))  # reuse the buffer for max(l, 0)
        ctx.save_for_backward(logits, value)
        ctx.event_dims = event_dims
        return out.flatten(out.dim() - event_dims).sum(-1) if event_dims else out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        logits, value = ctx.saved_tensors
        grad = grad.reshape(grad.shape + (1,) * ctx.event_dims)
        dtype = _compute_dtype(logits)
        l, x = logits.to(dtype), value.to(dtype)
        grad_logits = ((x - torch.sigmoid(l)) * grad).to(logits.dtype) if ctx.needs_input_grad[0] else None
        grad_value = (l * grad).to(value.dtype) if ctx.needs_input_grad[1] else None
        return grad_logits, grad_value, None


def bernoulli_log_likelihood(logits: torch.Tensor, value: torch.Tensor, event_dims: int) -> torch.Tensor:
    """sum over the last ``event_dims`` dims of x l - softplus(l), nats; ``logits`` and ``value`` broadcast
    (as views: the expansion's gradient is reduced by autograd)."""
    logits, value = torch.broadcast_tensors(logits, value)
    return _BernoulliLogLikelihood.apply(logits, value, event_dims)
