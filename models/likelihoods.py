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


@dataclass(frozen=True)
class Likelihood:
    """A pixel likelihood: parameters (..., C * params_per_pixel(levels), H, W) -> distribution."""

    name: str
    params_per_pixel: Callable[[int], int]
    accepts: Callable[[DatasetSpec], bool]
    distribution: Callable[[torch.Tensor, DatasetSpec], dist.TorchDistribution]
    mean: Callable[[torch.Tensor, DatasetSpec], torch.Tensor]

    def check(self, spec: DatasetSpec) -> None:
        """Refuse a data set this head cannot represent, naming those it accepts."""
        if not self.accepts(spec):
            ok = [name for name, s in DATASETS.items() if self.accepts(s)]
            raise DGMError(f"the {self.name} likelihood cannot represent {spec.name} ({spec.levels} levels); "
                           f"it accepts: {', '.join(ok)}")


def _bernoulli(params: torch.Tensor, spec: DatasetSpec) -> dist.TorchDistribution:
    """x_d ~ Bernoulli(sigmoid(logit_d)), independent over the C*H*W pixels."""
    return dist.Bernoulli(logits=params, validate_args=False).to_event(3)


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


def likelihood(name: str, spec: DatasetSpec) -> Likelihood:
    """The head called ``name`` (``auto``: Bernoulli for binary data, else categorical), checked against ``spec``."""
    if name == "auto":
        name = "bernoulli" if spec.binary else "categorical"
    if name not in LIKELIHOODS:
        raise DGMError(f"unknown likelihood {name!r}; choose one of auto, {', '.join(LIKELIHOODS)}")
    head = LIKELIHOODS[name]
    head.check(spec)
    return head
