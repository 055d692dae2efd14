"""What every autoregressive model (ARM) of the project shares: the product rule as a Pyro model,
exact log p(x), input checks, and the interface its samplers use.

An ARM over images x of D = H*W pixels (C = 1 channel) read in raster order factorises::

    p(x) = prod_{i=1..D} p(x_i | x_<i),     log p(x) = sum_i log p(x_i | x_<i)   (nats)

A causal network f maps the whole image to per-pixel parameters in one pass, where the parameters of
pixel i depend on x_<i only; the likelihood head turns them into p(x_i | x_<i). Pyro story::

    with pyro.plate("data", N):
        pyro.sample("x", Head(f(x)), obs=x)        # event shape (C, H, W)

No latent sites, so the guide is empty and SVI with our ELBO minimises exact -log p(x). A class-
conditional model (``num_classes > 0``) takes labels as a keyword: ``model(x, y=labels)``, with
``y`` a long tensor (N,) of classes 0..num_classes-1; the shared trainer feeds images only, so it
trains unconditional models (see ``models/arm/gated_pixelcnn.py``).

Samplers (``models/arm/sampling.py``) need ``forward(x, y)`` (the naive sampler), ``incremental(n, y)``
(the cached one) and ``level_log_probs(params)``: log p(x_i = k | x_<i) for every level k.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import pyro
import torch

from core.errors import DGMError
from data.specs import DatasetSpec
from models.base import GenerativeModel
from models.likelihoods import Likelihood, likelihood
from models.arm.sampling import sample_cached

HeadName = Literal["auto", "bernoulli", "categorical", "logistic_mixture"]

#: images per chunk in log_marginal and sample (bounds memory: activations of the whole test set at once
#: would need gigabytes)
CHUNK = 256


@dataclass
class HeadConfig:
    """Likelihood options shared by the ARM configs (their dataclasses inherit these fields)."""

    likelihood: HeadName = field(default="auto", metadata={
        "help": "pixel likelihood p(x_i | x_<i): auto (Bernoulli for binary data, else a categorical over the "
                "levels), bernoulli, categorical, or logistic_mixture (PixelCNN++)"})
    mixture_components: int = field(default=5, metadata={"help": "components M of the logistic mixture"})

    def validate_head(self) -> None:
        if self.mixture_components < 1:
            raise DGMError(f"--mixture-components must be at least 1, got {self.mixture_components}")


def build_head(config: HeadConfig, spec: DatasetSpec) -> Likelihood:
    """The likelihood head named in ``config``, checked against the data set."""
    return likelihood(config.likelihood, spec, mixture_components=config.mixture_components)


class IncrementalState(Protocol):
    """The cached network of one batch of images being sampled in raster order (Ramachandran et al. 2017).

    For each pixel (r, c) in raster order the sampler calls ``params(r, c)`` (the head's parameters of
    that pixel, (n, C*P), computed from cached activations of earlier pixels), draws the pixel, then
    calls ``observe(value, r, c)`` with the drawn value (n,) on the data scale."""

    def params(self, r: int, c: int) -> torch.Tensor: ...

    def observe(self, value: torch.Tensor, r: int, c: int) -> None: ...


class AutoregressiveModel(GenerativeModel):
    """Base class of the ARMs: subclasses define ``network(inputs, y)`` and ``incremental(n, y)``."""

    has_latents = False
    mean_label = "conditional means along sampled trajectories"

    def __init__(self, spec: DatasetSpec, head: Likelihood, num_classes: int = 0):
        super().__init__(spec)
        if spec.shape[0] != 1:
            raise DGMError(f"the autoregressive models order pixels of single-channel images; {spec.name} has "
                           f"{spec.shape[0]} channels")
        self.head = head
        self.num_classes = num_classes
        self.params_per_pixel = spec.shape[0] * head.params_per_pixel(spec.levels)

    # ---- the network -------------------------------------------------------------------------
    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Data levels 0..L-1 -> network inputs 2x/(L-1) - 1 in [-1, 1]."""
        return x * (2.0 / (self.spec.levels - 1)) - 1.0

    def network(self, inputs: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Scaled images (N, 1, H, W) -> parameters (N, C*P, H, W); pixel i's depend on inputs before i."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images on the data scale (N, 1, H, W) -> per-pixel head parameters (N, C*P, H, W)."""
        return self.network(self.scale(x), self.check_labels(y, x.shape[0]))

    def incremental(self, n: int, y: torch.Tensor | None = None) -> IncrementalState:
        raise NotImplementedError

    # ---- likelihood --------------------------------------------------------------------------
    def observation(self, params: torch.Tensor):
        """prod_i p(x_i | x_<i) as a distribution with event shape (C, H, W)."""
        return self.head.distribution(params, self.spec)

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        """Head parameters of single pixels (n, C*P) -> log p(x_i = k | x_<i) for k = 0..L-1, (n, L)."""
        base = self.observation(params[..., None, None]).base_dist  # batch (n, C, 1, 1)
        levels = torch.arange(self.spec.levels, dtype=params.dtype, device=params.device)
        log_probs = base.log_prob(levels.reshape(-1, 1, 1, 1, 1))  # (L, n, C, 1, 1)
        return log_probs[:, :, 0, 0, 0].T

    def check_labels(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Labels of a class-conditional model: a long tensor (n,) in 0..num_classes-1; None otherwise."""
        if not self.num_classes:
            if y is not None:
                raise DGMError("this model is unconditional (num_classes 0) and takes no labels")
            return None
        if y is None:
            raise DGMError(f"this model is class-conditional ({self.num_classes} classes): pass labels, "
                           "model(x, y=labels) / log_prob(x, y) / sample(n, y=labels)")
        if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int32, torch.int64) or tuple(y.shape) != (n,):
            raise DGMError(f"labels must be an integer tensor of shape ({n},), got "
                           f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
        if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
            raise DGMError(f"labels must lie in 0..{self.num_classes - 1}; got values in "
                           f"[{int(y.min())}, {int(y.max())}]")
        return y.long()

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """x (N, 1, H, W) observed in the data plate under the product of the conditionals."""
        self.check_data(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.observation(self(x, y)), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """No latent sites: the empty guide."""

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) = sum_i log p(x_i | x_<i) per image, (N,), nats (differentiable, one pass)."""
        self.check_data(x)
        return self.observation(self(x, y)).log_prob(x)

    @torch.no_grad()
    def log_marginal(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) per image in float64, in chunks of ``CHUNK`` images (used by the ``exact`` estimator)."""
        self.check_data(x)
        labels = self.check_labels(y, x.shape[0])
        parts = [self.log_prob(x[i:i + CHUNK], None if labels is None else labels[i:i + CHUNK]).double()
                 for i in range(0, x.shape[0], CHUNK)]
        return torch.cat(parts) if parts else x.new_zeros(0, dtype=torch.float64)

    # ---- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False, y: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images (n, 1, H, W) drawn pixel by pixel with the cached sampler.

        ``mean=True`` returns, along the drawn trajectory, each pixel's conditional mean
        E[x_i | x_<i] instead of the drawn x_i (there is no latent to condition on, so this is the
        ARM's counterpart of a decoder mean). A conditional model without ``y`` cycles through the classes.
        """

        if n < 1:
            raise DGMError(f"the number of samples must be at least 1, got {n}")
        device = next(self.parameters()).device
        if self.num_classes and y is None:
            y = torch.arange(n, device=device) % self.num_classes
        labels = self.check_labels(y, n)
        chunks = [sample_cached(self, min(CHUNK, n - i), y=None if labels is None else labels[i:i + CHUNK],
                                mean=mean) for i in range(0, n, CHUNK)]
        return torch.cat(chunks)
