"""One affine autoregressive transform, used as MAF (fast density) or IAF (fast sampling).

The transform T with a MADE conditioner (``models.flows.made``) on its own input u:

    T(u) = u * exp(s(u)) + m(u),          log |det dT/du| = sum_i s_i(u)      (one MADE pass)
    T^-1(v): u_i = (v_i - m_i(u)) * exp(-s_i(u)), in the MADE order            (D MADE passes)

(s bounded, ``models.flows.log_scale``). MAF and IAF are the same T in opposite directions
(Papamakarios et al. 2017, section 3.3):

    iaf  _call = T       (base -> data in one pass: fast sampling, Kingma et al. 2016)
         _inverse = T^-1 (data -> base in D passes: slow density of arbitrary data)
    maf  _call = T^-1    (sampling in D passes)
         _inverse = T    (density in one pass: maximum-likelihood training)

T^-1 is a fixed-point iteration started at u = 0: after pass k the coordinates of degree <= k
are exact (each depends only on lower degrees), so D passes give the exact inverse; the
log-scales of the last pass are those of the exact u. T equals Pyro's ``AffineAutoregressive``
with the same network (IAF), and T^-1 its inverse (MAF): the oracle tests compare them.
``ConditionalAffineAutoregressive`` feeds a context to the MADE (amortised IAF posteriors).

VAE flow families (``models.flows.vae_families``): posterior ``iaf`` (conditional IAF layers) and
prior ``maf``, L layers whose MADE orders alternate natural / reversed.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch import nn

from core.errors import DGMError
from models.flows.affine_update import affine_update
from models.flows.base import FlowTransform
from models.flows.conditioners import ContextBound
from models.flows.log_scale import bound_log_scale, check_log_scale_bounds
from models.flows.made import MADE, min_hidden_units
from models.flows.permutation import alternating_order
from models.flows.registry import randomize_, register_transform
from models.flows.vae_families import LayerRequest, register_flow_family

Mode = Literal["maf", "iaf"]


class AffineAutoregressive(FlowTransform):
    """T(u) = u * exp(s(u)) + m(u) with a MADE; ``mode`` says which direction is ``_call``."""

    autoregressive = True

    def __init__(self, made: nn.Module, mode: Mode = "maf", *, log_scale_min: float = -5.0,
                 log_scale_max: float = 3.0, bound: str = "soft"):
        super().__init__(cache_size=1)
        if mode not in ("maf", "iaf"):
            raise DGMError(f"unknown autoregressive mode {mode!r}; choose maf or iaf")
        check_log_scale_bounds(log_scale_min, log_scale_max, bound)
        self.made, self.mode = made, mode
        self.log_scale_min, self.log_scale_max, self.bound = log_scale_min, log_scale_max, bound

    def params(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """shift m(u) and bounded log-scale s(u), each (..., D)."""
        shift, raw = self.made(u)
        return shift, bound_log_scale(raw, self.log_scale_min, self.log_scale_max, self.bound)

    def forward_t(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v = T(u) in one pass, and log |det dT/du| (batch shape)."""
        shift, raw = self.made(u)
        return affine_update(u, shift, raw, self.log_scale_min, self.log_scale_max, self.bound, inverse=False)

    def inverse_t(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u = T^-1(v) in D passes, and log |det dT/du| at that u (batch shape)."""
        u = torch.zeros_like(v)
        for _ in range(v.shape[-1]):
            shift, log_scale = self.params(u)
            u = (v - shift) * (-log_scale).exp()
        return u, log_scale.sum(-1)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "iaf":
            y, ladj = self.forward_t(x)
        else:
            y, ladj_t = self.inverse_t(x)
            ladj = -ladj_t
        self._remember(x, y, ladj)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.mode == "iaf":
            x, ladj = self.inverse_t(y)
        else:
            x, ladj_t = self.forward_t(y)
            ladj = -ladj_t
        self._remember(x, y, ladj)
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # the MADE reads T's input: x for IAF, y for MAF (one pass either way)
        return self.params(x)[1].sum(-1) if self.mode == "iaf" else -self.params(y)[1].sum(-1)


class ConditionalAffineAutoregressive(ConditionalTransformModule):
    """Affine autoregressive transform whose MADE also reads a context (every hidden unit sees it)."""

    domain = AffineAutoregressive.domain
    codomain = AffineAutoregressive.codomain
    bijective = True

    def __init__(self, made: MADE, mode: Mode = "iaf", **bounds: float | str):
        super().__init__()
        if not made.context_features:
            raise DGMError("a conditional autoregressive transform needs a MADE with context features")
        self.made, self.mode, self.bounds = made, mode, bounds
        AffineAutoregressive(made, mode, **bounds)  # validate mode and bounds now

    def condition(self, context: torch.Tensor) -> AffineAutoregressive:
        """The transform at this context (..., context_dim); the MADE is shared, not copied."""
        return AffineAutoregressive(ContextBound(self.made, context), self.mode, **self.bounds)


def affine_autoregressive(dim: int, hidden: tuple[int, ...], mode: Mode = "maf", order: torch.Tensor | None = None,
                          activation: str = "relu", context_features: int = 0,
                          **bounds: float | str) -> AffineAutoregressive | ConditionalAffineAutoregressive:
    """A MAF or IAF layer over D coordinates with a MADE of the given hidden sizes and order."""
    made = MADE(dim, hidden, 2, order, context_features, activation)
    if context_features:
        return ConditionalAffineAutoregressive(made, mode, **bounds)
    return AffineAutoregressive(made, mode, **bounds)


# ---- registry --------------------------------------------------------------------------------
def _example(mode: Mode, conditional: bool = False):
    def example(shape: tuple[int, ...], context_dim: int, gen: torch.Generator):
        dim = shape[0]
        order = torch.randperm(dim, generator=gen)
        hidden = (max(2 * dim, 8),)
        t = affine_autoregressive(dim, hidden, mode, order, "tanh", context_dim if conditional else 0)
        return randomize_(t, gen, 0.4)
    return example


register_transform("maf", AffineAutoregressive, _example("maf"), min_dim=2,
                   description="masked autoregressive flow layer: one-pass density, D-pass sampling")
register_transform("iaf", AffineAutoregressive, _example("iaf"), min_dim=2,
                   description="inverse autoregressive flow layer: one-pass sampling, D-pass density")
register_transform("conditional_iaf", ConditionalAffineAutoregressive, _example("iaf", conditional=True),
                   conditional=True, min_dim=1,
                   description="IAF layer whose MADE also reads a context (amortised posteriors)")


# ---- VAE flow families -----------------------------------------------------------------------
def check_made_width(request: LayerRequest, options: None, label: Callable[[str], str]) -> None:
    """Every --flow-hidden layer of the MADE represents every degree (``made.min_hidden_units``)."""
    needed = min_hidden_units(request.latent_dim, request.context > 0)
    if min(request.hidden) < needed:
        raise DGMError(f"--flow-hidden layers of a MADE need at least {needed} units for {request.latent_dim} latent "
                       f"dimensions, got {tuple(request.hidden)}")


def autoregressive_layers(mode: Mode) -> Callable[[LayerRequest, None], list[nn.Module]]:
    """The builder of L IAF (posterior, context-conditioned) or MAF (prior) layers, MADE orders alternating."""
    def build(request: LayerRequest, options: None) -> list[nn.Module]:
        dim = request.latent_dim
        return [affine_autoregressive(dim, request.hidden, mode, alternating_order(dim, k), request.activation,
                                      request.context) for k in range(request.length)]
    return build


register_flow_family("posterior", "iaf", "conditional_iaf", autoregressive_layers("iaf"), check=check_made_width,
                     uses_hidden=True, description="Kingma et al. (2016): MADE(z, h) -> shift, log-scale; "
                     "orders alternate")
register_flow_family("prior", "maf", "maf", autoregressive_layers("maf"), check=check_made_width, uses_hidden=True,
                     description="MAF layers (one-pass density, D-pass sampling), MADE orders alternating")
