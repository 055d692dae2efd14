"""Invertible 1x1 convolution in LU form (Glow, Kingma & Dhariwal 2018, section 3.2): a learned
linear map of the channels, the same at every pixel.

    W = P L (U + diag(sign * exp(log_s)))        (C, C)
    _call:    y[:, h, w] = W x[:, h, w]
    _inverse: x[:, h, w] = W^-1 y[:, h, w]       (P^T, then two triangular solves: no inverse matrix)
    log |det dy/dx| = H * W * sum_c log_s_c      (O(C), no determinant)

P is a fixed permutation matrix with (P A)[i] = A[perm[i]] (Pyro's ``GeneralizedChannelPermute``
stores the same P = I[perm]), L is unit lower triangular, U strictly upper triangular, ``sign`` a
fixed +-1 vector (buffer ``diag_sign``). As in Glow, W starts as a random rotation (its LU factors with partial pivoting
give P, L, U and the signs): a fresh Glow step already mixes the channels that its coupling splits.
``init="identity"`` starts at W = I instead.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from core.errors import DGMError
from models.flows.image import ImageFlowTransform
from models.flows.registry import register_transform


class InvertibleConv1x1(ImageFlowTransform):
    """y = W x at each pixel, W = P L (U + diag(sign exp(log_s))) (see the module docstring)."""

    def __init__(self, channels: int, init: Literal["orthogonal", "identity"] = "orthogonal",
                 generator: torch.Generator | None = None):
        super().__init__(cache_size=1)
        if channels < 1:
            raise DGMError(f"an invertible 1x1 convolution needs at least one channel, got {channels}")
        self.channels = channels
        perm, lower, upper, sign, log_s = _identity_lu(channels) if init == "identity" \
            else _rotation_lu(channels, generator)
        self.register_buffer("permutation", perm)
        self.register_buffer("diag_sign", sign)
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(upper)
        self.log_s = nn.Parameter(log_s)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """L (unit lower triangular) and U' = U + diag(sign exp(log_s)) (upper triangular), (C, C)."""
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        return self.lower.tril(-1) + eye, self.upper.triu(1) + torch.diag(self.diag_sign * self.log_s.exp())

    def weight(self) -> torch.Tensor:
        """W = P L U' as a dense (C, C) matrix; (P A)[i] = A[perm[i]]."""
        lower, upper = self.factors()
        return (lower @ upper).index_select(0, self.permutation)

    def _ladj(self, v: torch.Tensor) -> torch.Tensor:
        return (v.shape[-1] * v.shape[-2] * self.log_s.sum()).expand(v.shape[:-3])

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image(x, self.channels)
        y = torch.einsum("oc,...chw->...ohw", self.weight(), x)
        self._remember(x, y, self._ladj(x))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self.check_image(y, self.channels)
        lower, upper = self.factors()
        # P^T y: (P^T v)[perm[i]] = v[i], i.e. channel j of P^T v is channel argsort(perm)[j] of v
        columns = y.index_select(-3, self.permutation.argsort()).movedim(-3, 0).reshape(self.channels, -1)
        z = torch.linalg.solve_triangular(lower, columns, upper=False, unitriangular=True)
        x_columns = torch.linalg.solve_triangular(upper, z, upper=True)
        moved = y.movedim(-3, 0).shape
        x = x_columns.reshape(moved).movedim(0, -3)
        self._remember(x, y, self._ladj(y))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._ladj(x)


def _identity_lu(c: int) -> tuple[torch.Tensor, ...]:
    return torch.arange(c), torch.zeros(c, c), torch.zeros(c, c), torch.ones(c), torch.zeros(c)


def _rotation_lu(c: int, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
    """LU factors of a random rotation Q = P L U (partial pivoting): (perm, L, U strict, sign, log|diag U|)."""
    q, _ = torch.linalg.qr(torch.randn(c, c, generator=generator, dtype=torch.float64))
    p, lower, upper = torch.linalg.lu(q)  # q = p @ lower @ upper
    perm = p.argmax(1)                    # p = I[perm]
    diag = upper.diagonal()
    dtype = torch.get_default_dtype()
    return (perm, lower.tril(-1).to(dtype), upper.triu(1).to(dtype), diag.sign().to(dtype),
            diag.abs().log().to(dtype))


def _example(shape: tuple[int, ...], ctx: int, gen: torch.Generator) -> InvertibleConv1x1:
    layer = InvertibleConv1x1(shape[0], generator=gen)
    with torch.no_grad():  # perturb the rotation so that log |det W| != 0 and the factors are generic
        layer.lower.add_(0.3 * torch.randn(layer.lower.shape, generator=gen))
        layer.upper.add_(0.3 * torch.randn(layer.upper.shape, generator=gen))
        layer.log_s.add_(0.3 * torch.randn(layer.log_s.shape, generator=gen))
    return layer


register_transform("invertible_conv1x1", InvertibleConv1x1, _example, event="image",
                   description="Glow invertible 1x1 convolution, LU-parameterised")
