"""The variational autoencoder (Kingma & Welling 2014) as a Pyro model/guide pair.

Generative story, for each image in ``pyro.plate("data", N)``::

    z ~ N(0, I_L)                       latent, L = latent_dim
    x ~ p(x | f_theta(z))               Bernoulli for binary data, categorical over levels otherwise

Guide: ``z ~ N(mu_phi(x), diag sigma_phi(x)^2)`` with sigma = softplus(.) + 1e-4.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from core.errors import DGMError
from data.specs import DatasetSpec
from models.base import GenerativeModel
from models.likelihoods import likelihood
from models.networks import Activation, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from models.registry import register_model


@dataclass
class VAEConfig:
    """Options of ``python -m inference.train vae``."""

    latent_dim: int = field(default=20, metadata={"help": "latent dimensions L (2 draws the manifold)"})
    hidden: tuple[int, ...] = field(default=(500, 500), metadata={"help": "hidden layer sizes of the encoder "
                                                                           "(the decoder mirrors them)"})
    activation: Activation = field(default="relu", metadata={"help": "hidden activation"})
    arch: Literal["mlp", "conv"] = field(default="mlp", metadata={"help": "MLP or convolutional networks"})
    likelihood: Literal["auto", "bernoulli", "categorical"] = field(
        default="auto", metadata={"help": "pixel likelihood; auto: Bernoulli for binary data, else categorical"})
    objective: Literal["elbo", "iwae"] = field(default="elbo", metadata={
        "help": "training objective: ELBO (analytic KL) or the K-sample importance-weighted bound"})
    num_particles: int = field(default=1, metadata={"help": "samples per example (K for iwae)"})
    kl_warmup_epochs: float = field(default=0.0, metadata={
        "help": "linearly raise the KL weight from 0 to 1 over this many epochs (ELBO only)"})

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise DGMError(f"--latent-dim must be at least 1, got {self.latent_dim}")
        if self.num_particles < 1:
            raise DGMError(f"--num-particles must be at least 1, got {self.num_particles}")
        if any(h < 1 for h in self.hidden):
            raise DGMError(f"--hidden sizes must be positive, got {self.hidden}")
        if self.kl_warmup_epochs < 0:
            raise DGMError("--kl-warmup-epochs must be >= 0")
        if self.objective == "iwae" and self.kl_warmup_epochs:
            raise DGMError("--kl-warmup-epochs applies to the ELBO objective only")


class VAE(GenerativeModel):
    """Encoder mu_phi, sigma_phi; decoder f_theta; ``model`` and ``guide`` as in the module docstring."""

    def __init__(self, config: VAEConfig, spec: DatasetSpec):
        super().__init__(spec)
        self.config = config
        self.head = likelihood(config.likelihood, spec)
        channels, height, width = spec.shape
        out_shape = (channels * self.head.params_per_pixel(spec.levels), height, width)
        encoder_cls, decoder_cls = (MLPEncoder, MLPDecoder) if config.arch == "mlp" else (ConvEncoder, ConvDecoder)
        self.encoder = encoder_cls(spec.shape, config.hidden, 2 * config.latent_dim, config.activation)
        self.decoder = decoder_cls(config.latent_dim, config.hidden, out_shape, config.activation)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> loc, scale of q(z | x), each (N, L); inputs scaled to [0, 1]."""
        h = self.encoder(x / (self.spec.levels - 1))
        loc, raw_scale = h.chunk(2, dim=-1)
        return loc, F.softplus(raw_scale) + 1e-4

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z) = N(0, I_L) with event shape (L,)."""
        zeros = like.new_zeros(self.latent_dim)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def observation(self, z: torch.Tensor) -> dist.TorchDistribution:
        """p(x | z) with event shape (C, H, W)."""
        return self.head.distribution(self.decoder(z), self.spec)

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x))
            pyro.sample("x", self.observation(z), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encode(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] on the data scale, (..., C, H, W)."""
        return self.head.mean(self.decoder(z), self.spec)

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, device=device)
        return self.decode_mean(z) if mean else self.observation(z).sample()

    def objective(self) -> Any:
        """ELBO with ``num_particles`` samples (vectorised), or the IWAE bound with K = ``num_particles``."""
        from inference.elbo import AnalyticKLTrace_ELBO
        from inference.iwae import IWAE_ELBO

        k = self.config.num_particles
        if self.config.objective == "iwae":
            return IWAE_ELBO(num_particles=k, max_plate_nesting=self.max_plate_nesting)
        return AnalyticKLTrace_ELBO(num_particles=k, vectorize_particles=k > 1,
                                    max_plate_nesting=self.max_plate_nesting)

    def final_figures(self, run_dir: Path) -> None:
        """For a 2-D latent space: decoder means on a grid of z placed by the inverse normal CDF."""
        if self.latent_dim != 2:
            return
        from evaluation.plots import manifold_latents, save_image_grid

        steps = 20
        z = manifold_latents(steps).to(next(self.parameters()).device)
        save_image_grid(self.decode_mean(z), self.spec.levels, run_dir / "manifold.png",
                        title="decoder means on a 2-D latent grid", nrow=steps)

    def kl_weight(self, epoch: float) -> float:
        """KL warm-up: beta = min(1, epoch / kl_warmup_epochs), epoch counted fractionally."""
        warmup = self.config.kl_warmup_epochs
        return 1.0 if warmup <= 0 else min(1.0, epoch / warmup)

    @torch.no_grad()
    def validation_extras(self, x: torch.Tensor) -> dict[str, float]:
        return {"active_units": float(active_units(self, x))}


def active_units(vae: VAE, x: torch.Tensor, threshold: float = 1e-2, chunk: int = 1000) -> int:
    """Burda et al. (2016): A_u = Cov_x(E_{q(z|x)}[z_u]) ; a unit is active if A_u > threshold."""
    means = torch.cat([vae.encode(x[i:i + chunk])[0] for i in range(0, x.shape[0], chunk)])
    return int((means.double().var(dim=0) > threshold).sum())


@register_model("vae", VAEConfig, description="variational autoencoder, Bernoulli or categorical pixels")
def build_vae(config: VAEConfig, spec: DatasetSpec) -> VAE:
    """Build a :class:`VAE` for data set ``spec`` (refuses data its likelihood cannot represent)."""
    return VAE(config, spec)
