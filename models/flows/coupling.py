"""Coupling layers: affine (RealNVP, Dinh et al. 2017) and additive (NICE, Dinh et al. 2015).

With a binary mask b (True: passes unchanged and conditions), x_c = x[b], x_t = x[~b]:

    affine    _call:    y_c = x_c,  y_t = x_t * exp(s(x_c)) + t(x_c)
              _inverse: x_c = y_c,  x_t = (y_t - t(y_c)) * exp(-s(y_c))
              log |det dy/dx| = sum_i s_i(x_c)          (s bounded, ``models.flows.log_scale``)
    additive  y_t = x_t + t(x_c),   log |det dy/dx| = 0

Both directions take one conditioner pass, so density and sampling are equally fast. The
conditioner sees only the d_c = |b| conditioning coordinates (gathered, or sliced for halves masks;
not multiplied by the mask) and returns parameters for the d_t transformed ones.
``ConditionalAffineCoupling`` feeds a
context too: ``condition(context)`` returns an :class:`AffineCoupling`.

VAE flow families (``models.flows.vae_families``): ``realnvp`` as a posterior (conditioners read
(x_c, h)) and as a prior, L affine couplings whose halves masks alternate.
"""
from __future__ import annotations

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch import nn

from core.errors import DGMError
from models.flows.affine_update import affine_update
from models.flows.base import FlowTransform, zeros_ladj
from models.flows.conditioners import ContextBound, MLPConditioner
from models.flows.log_scale import bound_log_scale, check_log_scale_bounds
from models.flows.masks import make_mask
from models.flows.registry import randomize_, register_transform
from models.flows.vae_families import LayerRequest, register_flow_family


class _Coupling(FlowTransform):
    """Gathering and scattering of the conditioning (mask True) and transformed coordinates."""

    def __init__(self, mask: torch.Tensor, conditioner: nn.Module):
        super().__init__(cache_size=1)
        mask = torch.as_tensor(mask, dtype=torch.bool).reshape(-1)
        if mask.all() or not mask.any():
            raise DGMError("a coupling mask must keep some coordinates and transform the others")
        self.register_buffer("mask", mask)
        self.register_buffer("cond_index", mask.nonzero().squeeze(-1))
        self.register_buffer("trans_index", (~mask).nonzero().squeeze(-1))
        # position of each coordinate in cat([x_c, x_t]), to put the halves back in place
        self.register_buffer("merge_index", torch.cat([self.cond_index, self.trans_index]).argsort())
        self.conditioner = conditioner
        # halves masks (one contiguous block each side): slices and one cat instead of gathers (issue #18);
        # the same values as the gathers. None: the mask is not two blocks
        d_c = int(mask.sum())
        first = bool(mask[0])
        self._halves: tuple[int, bool] | None = (d_c, first) if bool(mask[:d_c].all() if first else
                                                                       mask[-d_c:].all()) else None

    def split(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if v.shape[-1] != self.mask.shape[0]:
            raise DGMError(f"{type(self).__name__} expects vectors of {self.mask.shape[0]} coordinates, "
                           f"got shape {tuple(v.shape)}")
        if self._halves is not None:
            d_c, cond_first = self._halves
            d_t = v.shape[-1] - d_c
            if cond_first:
                return v.split([d_c, d_t], dim=-1)  # views; one cat in backward, no zero-filled gathers
            v_t, v_c = v.split([d_t, d_c], dim=-1)
            return v_c, v_t
        return v.index_select(-1, self.cond_index), v.index_select(-1, self.trans_index)

    def merge(self, v_c: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
        v_c = v_c.expand(*v_t.shape[:-1], v_c.shape[-1])  # a context may widen the batch
        if self._halves is not None:
            return torch.cat([v_c, v_t] if self._halves[1] else [v_t, v_c], dim=-1)
        return torch.cat([v_c, v_t], dim=-1).index_select(-1, self.merge_index)


class AffineCoupling(_Coupling):
    """RealNVP affine coupling y_t = x_t * exp(s(x_c)) + t(x_c) (see the module docstring)."""

    def __init__(self, mask: torch.Tensor, conditioner: nn.Module, *, log_scale_min: float = -5.0,
                 log_scale_max: float = 3.0, bound: str = "soft"):
        super().__init__(mask, conditioner)
        check_log_scale_bounds(log_scale_min, log_scale_max, bound)
        self.log_scale_min, self.log_scale_max, self.bound = log_scale_min, log_scale_max, bound

    def params(self, v_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """shift t (..., d_t) and bounded log-scale s (..., d_t) from the conditioning part."""
        shift, raw = self.conditioner(v_c)
        return shift, bound_log_scale(raw, self.log_scale_min, self.log_scale_max, self.bound)

    def _update(self, v_t: torch.Tensor, v_c: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(transformed part, log |det| of ``_call``): x_t e^s + t, or (y_t - t) e^-s for ``inverse``."""
        shift, raw = self.conditioner(v_c)
        return affine_update(v_t, shift, raw, self.log_scale_min, self.log_scale_max, self.bound, inverse)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        x_c, x_t = self.split(x)
        y_t, ladj = self._update(x_t, x_c, inverse=False)
        y = self.merge(x_c, y_t)
        self._remember(x, y, ladj)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_c, y_t = self.split(y)
        x_t, ladj = self._update(y_t, y_c, inverse=True)
        x = self.merge(y_c, x_t)
        self._remember(x, y, ladj)
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.params(self.split(x)[0])[1].sum(-1)


class AdditiveCoupling(_Coupling):
    """NICE additive coupling y_t = x_t + t(x_c): volume preserving."""

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        x_c, x_t = self.split(x)
        (shift,) = self.conditioner(x_c)
        y = self.merge(x_c, x_t + shift)
        self._remember(x, y, zeros_ladj(y))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_c, y_t = self.split(y)
        (shift,) = self.conditioner(y_c)
        x = self.merge(y_c, y_t - shift)
        self._remember(x, y, zeros_ladj(x))
        return x

    def _log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return zeros_ladj(x)


class ConditionalAffineCoupling(ConditionalTransformModule):
    """Affine coupling whose conditioner also reads a context c: t(x_c, c), s(x_c, c)."""

    domain = AffineCoupling.domain
    codomain = AffineCoupling.codomain
    bijective = True

    def __init__(self, mask: torch.Tensor, conditioner: nn.Module, **bounds: float | str):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.bool).reshape(-1))
        self.conditioner = conditioner
        self.bounds = bounds
        AffineCoupling(self.mask, conditioner, **bounds)  # validate the mask and the bounds now

    def condition(self, context: torch.Tensor) -> AffineCoupling:
        """The coupling at this context (..., context_dim); the conditioner is shared, not copied."""
        return AffineCoupling(self.mask, ContextBound(self.conditioner, context), **self.bounds)


def affine_coupling(shape: tuple[int, ...], mask: str = "checkerboard", parity: int = 0,
                    hidden: tuple[int, ...] = (256, 256), activation: str = "relu", context_features: int = 0,
                    **bounds: float | str) -> AffineCoupling | ConditionalAffineCoupling:
    """An affine coupling with an MLP conditioner for events of ``shape`` ((D,) or (C, H, W))."""
    b = make_mask(mask, shape, parity)
    net = MLPConditioner(int(b.sum()), int((~b).sum()), hidden, 2, context_features, activation)
    if context_features:
        return ConditionalAffineCoupling(b, net, **bounds)
    return AffineCoupling(b, net, **bounds)


def additive_coupling(shape: tuple[int, ...], mask: str = "checkerboard", parity: int = 0,
                      hidden: tuple[int, ...] = (256, 256), activation: str = "relu") -> AdditiveCoupling:
    """A NICE additive coupling with an MLP conditioner for events of ``shape``."""
    b = make_mask(mask, shape, parity)
    return AdditiveCoupling(b, MLPConditioner(int(b.sum()), int((~b).sum()), hidden, 1, 0, activation))


# ---- registry --------------------------------------------------------------------------------
def _example(kind: str, mask: str, conditional: bool = False):
    def example(shape: tuple[int, ...], context_dim: int, gen: torch.Generator):
        ctx = context_dim if conditional else 0
        if kind == "affine":
            t = affine_coupling(shape, mask, 1, (16,), "tanh", ctx)
        else:
            t = additive_coupling(shape, mask, 1, (16,), "tanh")
        return randomize_(t, gen, 0.5)
    return example


register_transform("affine_coupling_halves", AffineCoupling, _example("affine", "halves"), min_dim=2,
                   description="RealNVP affine coupling, alternating halves mask, MLP conditioner")
register_transform("affine_coupling_checkerboard", AffineCoupling, _example("affine", "checkerboard"), min_dim=2,
                   description="RealNVP affine coupling, checkerboard mask on the 2-D layout, MLP conditioner")
register_transform("additive_coupling", AdditiveCoupling, _example("additive", "checkerboard"), min_dim=2,
                   volume_preserving=True, description="NICE additive coupling, MLP conditioner")
register_transform("conditional_affine_coupling", ConditionalAffineCoupling,
                   _example("affine", "halves", conditional=True), conditional=True, min_dim=2,
                   description="affine coupling whose conditioner also reads a context")


# ---- VAE flow families -----------------------------------------------------------------------
def halves_couplings(request: LayerRequest, options: None) -> list[nn.Module]:
    """L affine couplings with halves masks alternating (parity k mod 2); conditioners read h too for a
    posterior (``request.context`` > 0)."""
    return [affine_coupling((request.latent_dim,), "halves", k % 2, request.hidden, request.activation,
                            request.context) for k in range(request.length)]


register_flow_family("posterior", "realnvp", "conditional_affine_coupling", halves_couplings, uses_hidden=True,
                     description="affine couplings whose conditioner reads (z_c, h); halves masks alternate")
register_flow_family("prior", "realnvp", "affine_coupling_halves", halves_couplings, uses_hidden=True,
                     description="affine couplings with MLP conditioners, halves masks alternating")
