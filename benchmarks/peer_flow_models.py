"""Our vector flows (``models.flows.density.FlowDensity``, arch ``maf`` or ``realnvp_mlp``) rebuilt in zuko,
nflows and normflows with the same weights, for ``benchmarks/peer_flows.py``.

Each peer gets the same architecture (layers, hidden sizes, masks, orders) and a copy of our weights:

- MADE (MAF): the three masked linear layers with our weights *and our masks* (the peers derive hidden
  degrees differently; the cost of a masked layer does not depend on which entries are zero). The output
  rows are permuted into the peer's layout: ours [shift_1..D, raw_1..D]; zuko interleaves (shift, raw) per
  feature; nflows and normflows (raw, shift).
- couplings (RealNVP): our conditioner MLP (a ``stock_copy``: torch's ``nn.Linear`` layers, as the peers'
  own networks, where ours keeps ``core.cpu_linear.Linear``), the same masks (zuko and nflows take any mask; normflows
  splits halves, so the benchmark uses our ``halves`` masks and normflows' ``Permute(mode="swap")``
  between couplings, as in its RealNVP examples); output rows: ours and nflows [shift, raw] blocks,
  zuko and normflows interleaved (shift, raw).
- directions: ours lists layers base -> data; zuko and nflows list transforms data -> base (reversed
  order); normflows lists flows base -> data and evaluates densities through ``inverse``, so its MAF layer
  (whose ``forward`` is the one-pass data -> base map, nflows' convention) is wrapped in ``Reverse``.

What cannot be copied is each library's elementwise map from the raw output r to the log-scale and the
direction it applies it in: ours s = c tanh(r / c) (bounded in (-5, 3)), data -> base u = x e^{s} + m for MAF
and x_t = (y_t - t) e^{-s} for couplings; zuko s = r / (1 + |r| / 6.9), nflows' MAF softplus(r) + 1e-3 as the
scale, nflows' coupling sigmoid(r + 2) + 1e-3, normflows' MAF sigmoid(r + 2) + 1e-3, normflows' coupling
e^{r} in our direction. So the *check* swaps our map into each peer through the peer's own extension point
(``ours_maps``: zuko's ``univariate`` constructor, nflows'/normflows' elementwise methods on the instance,
normflows' ``param_map``), which makes every other part of the computation — masks, orders, gathers and
scatters, Jacobian sums, base density — the peer's own, and then the loss values must agree with ours.
The *timed* peer is the stock one with the same weights (its map costs O(B D), the networks O(B D H)).

Data side, for the peers (ours does it in its Pyro model): y = x + u on the integer scale, w = logit(alpha +
(1 - 2 alpha) y / L), and log |dw/dy| added to the flow's log p(w) (``models.flows.preprocessing``).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, Callable, ContextManager, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Transform, constraints

from benchmarks.stock_layers import stock_copy
from core.errors import DGMError
from models.flows.density import FlowDensity
from models.flows.log_scale import bound_log_scale
from models.flows.masks import halves_mask

Bound = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PeerFlow:
    """A peer's copy of our flow: ``log_prob(w)`` and ``sample(n) -> w`` on the logit scale (N, D), and
    ``ours_maps()``, a context within which its elementwise log-scale map is ours (checks only)."""

    name: str
    module: nn.Module
    log_prob: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[int], torch.Tensor]
    ours_maps: Callable[[], ContextManager]


# ---- the data side ---------------------------------------------------------------------------------
def dequantized_logit(y: torch.Tensor, levels: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """w = logit(alpha + (1 - 2 alpha) y / L) of dequantized images y (N, D) and log |det dw/dy| (N,)."""
    p = alpha + (1.0 - 2.0 * alpha) * (y / levels)
    w = torch.log(p) - torch.log1p(-p)
    dim = y.shape[-1]
    log_jacobian = -(F.logsigmoid(w) + F.logsigmoid(-w)).sum(-1) + dim * math.log1p(-2.0 * alpha) \
        - dim * math.log(levels)
    return w, log_jacobian


def logit_to_images(w: torch.Tensor, levels: int, alpha: float) -> torch.Tensor:
    """Continuous images y = L (sigmoid(w) - alpha) / (1 - 2 alpha) from flow outputs w (N, D)."""
    return (torch.sigmoid(w) - alpha) / (1.0 - 2.0 * alpha) * levels


# ---- weights ------------------------------------------------------------------------------------------
def pair_rows(dim: int, order: str) -> torch.Tensor:
    """Row index into our [shift (D), raw (D)] output block for a peer's layout: "shift_raw" / "raw_shift"
    interleave per feature, "blocks" keeps ours."""
    shift, raw = torch.arange(dim), torch.arange(dim) + dim
    if order == "blocks":
        return torch.cat([shift, raw])
    pair = (shift, raw) if order == "shift_raw" else (raw, shift)
    return torch.stack(pair, dim=1).flatten()


@torch.no_grad()
def copy_layers(source: list[nn.Module], target: list[nn.Module], last_rows: torch.Tensor) -> None:
    """Copy weights, biases and (where both have one) masks layer by layer; the last layer's output rows
    are taken in the order ``last_rows``."""
    if [tuple(s.weight.shape) for s in source] != [tuple(t.weight.shape) for t in target]:
        raise DGMError("the peer's layers differ in shape from ours: " +
                       f"{[tuple(t.weight.shape) for t in target]} vs {[tuple(s.weight.shape) for s in source]}")
    for i, (s, t) in enumerate(zip(source, target)):
        rows = last_rows.to(s.weight.device) if i == len(source) - 1 else slice(None)
        t.weight.copy_(s.weight[rows])
        t.bias.copy_(s.bias[rows])
        if hasattr(s, "mask") and hasattr(t, "mask"):
            t.mask.copy_(s.mask[rows].to(t.mask.dtype))


def linear_layers(net: nn.Module) -> list[nn.Module]:
    """The layers with weights of a sequential network, in order (torch's and zuko's own ``Linear``)."""
    return [m for m in net if hasattr(m, "weight")]


def conditioner_linears(layer: Any) -> list[nn.Module]:
    """The linear layers of one of our layers' networks: MADE layers (MAF) or the coupling's MLP."""
    if hasattr(layer, "made"):
        return list(layer.made.layers)
    return linear_layers(layer.conditioner.net)


class ContextFree(nn.Module):
    """Our conditioner network as nflows calls a coupling's network: ``net(x, context)``, context unused."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)


def equal_widths(hidden: tuple[int, ...], peer: str) -> int:
    """nflows' and normflows' MADE have one hidden width (``num_blocks`` = layers - 1); refuse others."""
    if len(set(hidden)) != 1:
        raise DGMError(f"{peer}'s MADE needs equal hidden widths, got {hidden}")
    return hidden[0]


@contextlib.contextmanager
def replaced(obj: Any, name: str, value: Any) -> Iterator[None]:
    """``obj.name = value`` within the context (an instance attribute over a class method is removed after)."""
    own = name in vars(obj) or (isinstance(obj, nn.Module) and name in obj._modules)
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if own:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


def all_replaced(replacements: list[tuple[Any, str, Any]]) -> ContextManager:
    stack = contextlib.ExitStack()
    for obj, name, value in replacements:
        stack.enter_context(replaced(obj, name, value))
    return stack


# ---- our elementwise maps, in the peers' shapes ----------------------------------------------------
class OursAffine(Transform):
    """Our affine map as a zuko univariate transform of (shift, raw): data -> base ``x e^{s} + shift``
    (MAF) or ``(x - shift) e^{-s}`` (``inverse=True``: couplings), s our bounded log-scale of raw."""

    domain = constraints.real
    codomain = constraints.real
    bijective = True

    def __init__(self, shift: torch.Tensor, raw: torch.Tensor, bound: Bound, inverse: bool):
        super().__init__()
        self.shift, self.inverse = shift, inverse
        self.log_scale = -bound(raw) if inverse else bound(raw)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverse:
            return (x - self.shift) * self.log_scale.exp()
        return x * self.log_scale.exp() + self.shift

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.inverse:
            return y * (-self.log_scale).exp() + self.shift
        return (y - self.shift) * (-self.log_scale).exp()

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_scale.expand(x.shape)


class BoundScales(nn.Module):
    """normflows' coupling ``param_map`` with our bound on its scale outputs (interleaved (shift, raw))."""

    def __init__(self, net: nn.Module, bound: Bound):
        super().__init__()
        self.net, self.bound = net, bound

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        params = self.net(z)
        return torch.stack([params[:, 0::2], self.bound(params[:, 1::2])], dim=-1).flatten(1)


def made_forward(transform: Any, bound: Bound) -> Callable:
    """nflows'/normflows' ``_elementwise_forward`` (data -> base) with our log-scale: u = x e^{s} + shift."""

    def forward(inputs: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, shift = transform._unconstrained_scale_and_shift(params)
        log_scale = bound(raw)
        return inputs * log_scale.exp() + shift, log_scale.sum(-1)

    return forward


def coupling_maps(transform: Any, bound: Bound) -> tuple[Callable, Callable]:
    """nflows' coupling ``_coupling_transform_forward`` / ``_inverse`` with ours: data -> base
    x_t = (y_t - t) e^{-s}, base -> data y_t = x_t e^{s} + t (params [shift, raw] blocks)."""
    d = transform.num_transform_features

    # nflows passes transform_params by keyword
    def forward(inputs: torch.Tensor, transform_params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale = bound(transform_params[:, d:])
        return (inputs - transform_params[:, :d]) * (-log_scale).exp(), -log_scale.sum(-1)

    def inverse(inputs: torch.Tensor, transform_params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale = bound(transform_params[:, d:])
        return inputs * log_scale.exp() + transform_params[:, :d], log_scale.sum(-1)

    return forward, inverse


# ---- the peers -------------------------------------------------------------------------------------
def our_bound(model: FlowDensity) -> Bound:
    cfg = model.config
    return partial(bound_log_scale, low=cfg.log_scale_min, high=cfg.log_scale_max, bound=cfg.log_scale_bound)


def zuko_flow(zuko: ModuleType, model: FlowDensity) -> PeerFlow:
    """zuko ``MaskedAutoregressiveTransform`` / ``GeneralCouplingTransform`` layers in a ``zuko.lazy.Flow``."""
    dim, hidden, maf = model.spec.dim, tuple(model.config.hidden), model.config.arch == "maf"
    transforms = []
    for layer in reversed(model.flow):  # zuko: data -> base
        if maf:
            t = zuko.flows.MaskedAutoregressiveTransform(dim, order=layer.made.order.cpu(), hidden_features=hidden)
        else:
            t = zuko.flows.GeneralCouplingTransform(dim, mask=layer.mask.cpu(), hidden_features=hidden)
        linears = linear_layers(t.hyper)
        copy_layers(conditioner_linears(layer), linears, pair_rows(linears[-1].out_features // 2, "shift_raw"))
        transforms.append(t)
    base = zuko.lazy.UnconditionalDistribution(zuko.distributions.DiagNormal, torch.zeros(dim), torch.ones(dim),
                                               buffer=True)
    flow = zuko.lazy.Flow(transforms, base).to(model.base_loc.device)
    ours = partial(OursAffine, bound=our_bound(model), inverse=not maf)
    return PeerFlow("zuko", flow, lambda w: flow().log_prob(w), lambda n: flow().sample((n,)),
                    lambda: all_replaced([(t, "univariate", ours) for t in transforms]))


def nflows_flow(nflows: ModuleType, model: FlowDensity) -> PeerFlow:
    """nflows ``MaskedAffineAutoregressiveTransform`` (no residual blocks) / ``AffineCouplingTransform``
    (our conditioner network) in a ``nflows.flows.Flow`` with a standard normal base."""
    dim, hidden, maf = model.spec.dim, tuple(model.config.hidden), model.config.arch == "maf"
    bound = our_bound(model)
    transforms, swaps = [], []
    for layer in reversed(model.flow):  # nflows: data -> base
        if maf:
            t = nflows.transforms.MaskedAffineAutoregressiveTransform(
                features=dim, hidden_features=equal_widths(hidden, "nflows"), num_blocks=len(hidden) - 1,
                use_residual_blocks=False)
            made = t.autoregressive_net
            copy_layers(conditioner_linears(layer), [made.initial_layer, *[b.linear for b in made.blocks],
                                                     made.final_layer], pair_rows(dim, "raw_shift"))
            swaps.append((t, "_elementwise_forward", made_forward(t, bound)))
        else:
            t = nflows.transforms.AffineCouplingTransform(
                mask=(~layer.mask).int().cpu(), transform_net_create_fn=lambda i, o, n=layer.conditioner.net: ContextFree(stock_copy(n)))
            forward, inverse = coupling_maps(t, bound)
            swaps += [(t, "_coupling_transform_forward", forward), (t, "_coupling_transform_inverse", inverse)]
        transforms.append(t)
    flow = nflows.flows.Flow(nflows.transforms.CompositeTransform(transforms),
                             nflows.distributions.StandardNormal([dim])).to(model.base_loc.device)
    return PeerFlow("nflows", flow, flow.log_prob, flow.sample, lambda: all_replaced(swaps))


def normflows_flow(normflows: ModuleType, model: FlowDensity) -> PeerFlow:
    """normflows ``Reverse(MaskedAffineAutoregressive)`` (no residual blocks) / ``AffineCouplingBlock`` with
    ``Permute(mode="swap")`` in a ``normflows.NormalizingFlow`` with a fixed ``DiagGaussian`` base."""
    dim, hidden, maf = model.spec.dim, tuple(model.config.hidden), model.config.arch == "maf"
    bound = our_bound(model)
    flows, swaps = [], []
    for i, layer in enumerate(model.flow):  # normflows: base -> data
        if maf:
            m = normflows.flows.MaskedAffineAutoregressive(dim, equal_widths(hidden, "normflows"),
                                                           num_blocks=len(hidden) - 1, use_residual_blocks=False)
            made = m.autoregressive_net
            copy_layers(conditioner_linears(layer), [made.initial_layer, *[b.linear for b in made.blocks],
                                                     made.final_layer], pair_rows(dim, "raw_shift"))
            flows.append(normflows.flows.Reverse(m))
            # normflows' MADE has no activation after its first layer when there are no residual blocks
            # (nflows' has one, as ours): the check adds ours; the timed peer keeps its one ReLU fewer
            swaps += [(m, "_elementwise_forward", made_forward(m, bound)),
                      (made, "initial_layer", nn.Sequential(made.initial_layer, nn.ReLU()))]
            continue
        if not torch.equal(layer.mask.cpu(), halves_mask(dim, i % 2)):
            raise DGMError("normflows' coupling splits halves: build ours with --mask halves")
        net = stock_copy(layer.conditioner.net)
        linears = linear_layers(net)
        copy_layers(linears, linears, pair_rows(linears[-1].out_features // 2, "shift_raw"))
        block = normflows.flows.AffineCouplingBlock(net, scale=True, scale_map="exp", split_mode="channel")
        flows += [block, normflows.flows.Permute(dim, mode="swap")]
        swaps.append((block.flows[1], "param_map", BoundScales(net, bound)))
    base = normflows.distributions.DiagGaussian(dim, trainable=False)
    flow = normflows.NormalizingFlow(base, flows).to(model.base_loc.device)
    return PeerFlow("normflows", flow, flow.log_prob, lambda n: flow.sample(n)[0], lambda: all_replaced(swaps))


BUILDERS: dict[str, Callable[[ModuleType, FlowDensity], PeerFlow]] = {
    "zuko": zuko_flow, "nflows": nflows_flow, "normflows": normflows_flow}
