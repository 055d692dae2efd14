"""Per-pixel observation models p(x | parameters) for decoders, as Pyro distributions over images.

Each head says how many parameters per pixel it needs, which data it can represent, how to build
the distribution with event shape (C, H, W), and its mean. New heads (e.g. a discretized logistic
mixture) register in ``LIKELIHOODS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyro.distributions as dist
import torch

from core.errors import DGMError
from data.specs import DATASETS, DatasetSpec
from models.distributions.bernoulli_log_likelihood import bernoulli_log_likelihood
from models.distributions.discretized_logistic_mixture import DiscretizedLogisticMixture
from models.dequantized import MIN_LOG_SCALE as FLOOR
from models.dequantized import dequantized_gaussian


@dataclass(frozen=True)
class Likelihood:
    """A pixel likelihood: parameters (..., C * params_per_pixel(levels), H, W) -> distribution."""

    name: str
    params_per_pixel: Callable[[int], int]
    accepts: Callable[[DatasetSpec], bool]
    distribution: Callable[[torch.Tensor, DatasetSpec], dist.TorchDistribution]
    mean: Callable[[torch.Tensor, DatasetSpec], torch.Tensor]
    #: True for a continuous density of the dequantized value x + u on the integer scale (the story
    #: then carries the noise site u of ``models.dequantized``); False for a distribution over levels
    dequantized: bool = False

    def check(self, spec: DatasetSpec) -> None:
        """Refuse a data set this head cannot represent, naming those it accepts."""
        if not self.accepts(spec):
            ok = [name for name, s in DATASETS.items() if self.accepts(s)]
            raise DGMError(f"the {self.name} likelihood cannot represent {spec.name} ({spec.levels} levels); "
                           f"it accepts: {', '.join(ok)}")


class SummedBernoulli(dist.Independent):
    """Bernoulli(logits) pixels independent over the event dims: log p(x) = sum_d [x_d l_d - softplus(l_d)],
    computed by ``models.distributions.bernoulli_log_likelihood`` (vectorised ``exp``/``log`` in place of torch's
    scalar ``log1p``: a fifth of the per-pixel cost on a CPU, within 6e-8 nats a pixel of torch's
    ``Bernoulli.log_prob``, the same gradient x - sigmoid(l))."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_likelihood(self.base_dist.logits, value, self.reinterpreted_batch_ndims)


def _bernoulli(params: torch.Tensor, spec: DatasetSpec) -> dist.TorchDistribution:
    """x_d ~ Bernoulli(sigmoid(logit_d)), independent over the C*H*W pixels."""
    return SummedBernoulli(dist.Bernoulli(logits=params, validate_args=False), 3)


def _level_logits(params: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """(..., C*L, H, W) -> (..., C, H, W, L) logits over the L levels of each pixel."""
    channels = spec.shape[0]
    logits = params.unflatten(-3, (channels, spec.levels))
    return logits.movedim(-3, -1)


def _categorical(params: torch.Tensor, spec: DatasetSpec) -> dist.TorchDistribution:
    """x_d ~ Categorical(softmax(logits_d)) over the data's levels 0..L-1, independent over pixels."""
    return dist.Categorical(logits=_level_logits(params, spec), validate_args=False).to_event(3)


def _categorical_mean(params: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    probs = _level_logits(params, spec).softmax(-1)
    levels = torch.arange(spec.levels, dtype=probs.dtype, device=probs.device)
    return (probs * levels).sum(-1)


LIKELIHOODS: dict[str, Likelihood] = {
    "bernoulli": Likelihood("bernoulli", lambda levels: 1, lambda s: s.binary, _bernoulli,
                            lambda p, s: torch.sigmoid(p)),
    "categorical": Likelihood("categorical", lambda levels: levels, lambda s: True, _categorical, _categorical_mean),
}


def likelihood(name: str, spec: DatasetSpec, *, mixture_components: int = 5) -> Likelihood:
    """The head called ``name`` (``auto``: Bernoulli for binary data, else categorical), checked against
    ``spec``; ``mixture_components`` is M of the logistic mixture."""
    if name == "auto":
        name = "bernoulli" if spec.binary else "categorical"
    if name not in LIKELIHOODS:
        raise DGMError(f"unknown likelihood {name!r}; choose one of auto, {', '.join(LIKELIHOODS)}")
    head = logistic_mixture_likelihood(mixture_components) if name == "logistic_mixture" else LIKELIHOODS[name]
    head.check(spec)
    return head


# ---- mixture of discretized logistics (PixelCNN++), added for the autoregressive models ----------
MIXTURE_COMPONENTS = 5  # default M of the registered "logistic_mixture" head
MIN_LOG_SCALE = -7.0  # PixelCNN++'s floor on log s: keeps 1/s finite while the bins stay resolvable


def _mixture_parameters(params: torch.Tensor, spec: DatasetSpec, components: int) -> tuple[torch.Tensor, ...]:
    """(..., C*3M, H, W) -> logits, loc, log_scale, each (..., C, H, W, M)."""
    grouped = params.unflatten(-3, (spec.shape[0], 3 * components)).movedim(-3, -1)
    logits, loc, log_scale = grouped.chunk(3, dim=-1)
    return logits, loc, log_scale.clamp_min(MIN_LOG_SCALE)


def logistic_mixture_likelihood(components: int = MIXTURE_COMPONENTS) -> Likelihood:
    """x_d ~ mixture of ``components`` discretized logistics over the data's levels (3M parameters a pixel),
    independent over pixels; see ``models.distributions.discretized_logistic_mixture``."""

    if not isinstance(components, int) or components < 1:
        raise DGMError(f"a logistic mixture needs at least 1 component, got {components!r}")

    def distribution(params: torch.Tensor, spec: DatasetSpec) -> dist.TorchDistribution:
        logits, loc, log_scale = _mixture_parameters(params, spec, components)
        return DiscretizedLogisticMixture(logits, loc, log_scale, spec.levels, validate_args=False).to_event(3)

    def mean(params: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
        return distribution(params, spec).base_dist.mean

    return Likelihood("logistic_mixture", lambda levels: 3 * components, lambda s: True, distribution, mean)


LIKELIHOODS["logistic_mixture"] = logistic_mixture_likelihood()


# ---- Gaussian on dequantized data scaled to [0, 1) (models.dequantized) -------------------------
def _gaussian_parameters(params: torch.Tensor, spec: DatasetSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2C, H, W) -> loc = sigmoid(a) in (0, 1) and scale = exp(max(b, MIN_LOG_SCALE)), each (..., C, H, W)."""

    a, b = params.unflatten(-3, (2, spec.shape[0])).unbind(-4)
    return torch.sigmoid(a), b.clamp_min(FLOOR).exp()


def _dequantized_gaussian(params: torch.Tensor, spec: DatasetSpec) -> dist.TorchDistribution:
    """y = x + u on the integer scale, y / L ~ N(loc, scale^2) per pixel (``models.dequantized``)."""

    return dequantized_gaussian(*_gaussian_parameters(params, spec), spec.levels)


def _dequantized_gaussian_mean(params: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """E[floor(L v)] ~ L loc - 1/2 on the data scale, clamped to the levels."""
    loc, _ = _gaussian_parameters(params, spec)
    return (spec.levels * loc - 0.5).clamp(0, spec.levels - 1)


LIKELIHOODS["gaussian"] = Likelihood("gaussian", lambda levels: 2, lambda s: True, _dequantized_gaussian,
                                     _dequantized_gaussian_mean, dequantized=True)
