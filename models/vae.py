"""The variational autoencoder (Kingma & Welling 2014) as a Pyro model/guide pair.

Generative story, for each image in ``pyro.plate("data", N)``::

    z ~ N(0, I_L)                       latent, L = latent_dim
    x ~ p(x | f_theta(z))               Bernoulli for binary data, categorical over levels otherwise

Grey levels (``--likelihood``): ``categorical`` over the L levels, ``logistic_mixture`` (M discretized
logistics per pixel, PixelCNN++'s likelihood, ``--mixture-components M``), or ``gaussian``: a
Gaussian on the dequantized image scaled to [0, 1) (``models.dequantized``)::

    u ~ U[0, 1)^D                       latent dequantization noise, guide = the same uniform
    (x + u) / L ~ N(loc_theta(z), diag sigma_theta(z)^2),  observed on the integer scale (Jacobian L^-D)

so that every estimator bounds log P(x) of the discrete data.

Guide: ``z ~ N(mu_phi(x), diag sigma_phi(x)^2)`` with sigma = softplus(.) + 1e-4.

Flows (``models.vae_flows``): ``--posterior-flow NAME --flow-length L`` pushes the guide's Gaussian
sample through L amortised flow layers whose parameters come from ``--flow-context`` extra encoder
outputs h(x); ``--prior-flow NAME --prior-flow-length L`` replaces N(0, I) by a learned flow prior
(trained at ``--prior-flow-lr-scale`` times ``--lr``). The names, and each family's own options
(``--flow-options KEY=VALUE``, ``--prior-flow-options``), come from the registry of VAE flow families
(``models.flows.vae_families``), so this config does not change when a family is added.
The KL term is then the Monte-Carlo log q(z | x) - log p(z) of the same sample.

``--preset burda``: Burda et al. (2016)'s one-stochastic-layer architecture for MNIST, 784-200-200-50
with tanh (encoder and decoder), where ``--latent-dim``, ``--hidden`` and ``--activation`` are not given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pyro
import pyro.distributions as dist
from pyro.distributions.kl import kl_divergence
import torch
import torch.nn.functional as F

from core.errors import DGMError
from data.specs import DatasetSpec
from core.plots import manifold_latents, save_image_grid
from models.base import GenerativeModel
from models.dequantized import NOISE_SITE, quantize, sample_noise, uniform_noise
from models.flows.choices import ChoicesHelp
from models.flows.vae_families import NO_FLOW
from models.likelihoods import likelihood
from models.protocols import ObjectiveRequest
from models.networks import Activation, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from models.registry import register_model
from models.vae_flows import describe_families, describe_options, flow_layers, flow_posterior, flow_prior, resolve_flow

#: architecture presets: values for the options left unset (None) on the command line
PRESETS: dict[str, dict[str, Any]] = {
    "none": {"latent_dim": 20, "hidden": (500, 500), "activation": "relu"},
    # Burda, Grosse & Salakhutdinov (2016), MNIST, one stochastic layer: 784-200-200-50, tanh
    "burda": {"latent_dim": 50, "hidden": (200, 200), "activation": "tanh"},
}


@dataclass
class VAEConfig:
    """Options of ``python -m inference.train vae``."""

    preset: Literal["none", "burda"] = field(default="none", metadata={
        "help": "architecture preset for the options below left unset: none (20 latents, 500-500, relu) or "
                "burda (Burda et al. 2016, one stochastic layer: 50 latents, 200-200, tanh)"})
    latent_dim: Optional[int] = field(default=None, metadata={
        "help": "latent dimensions L (2 draws the manifold); unset: 20, or the preset's"})
    hidden: Optional[tuple[int, ...]] = field(default=None, metadata={
        "help": "hidden layer sizes of the encoder (the decoder mirrors them); unset: 500 500, or the preset's"})
    activation: Optional[Activation] = field(default=None, metadata={
        "help": "hidden activation; unset: relu, or the preset's"})
    arch: Literal["mlp", "conv"] = field(default="mlp", metadata={"help": "MLP or convolutional networks"})
    likelihood: Literal["auto", "bernoulli", "categorical", "logistic_mixture", "gaussian"] = field(
        default="auto", metadata={"help": "pixel likelihood; auto: Bernoulli for binary data, else categorical; "
                                          "logistic_mixture: discretized logistic mixture; gaussian: Gaussian on "
                                          "uniformly dequantized data scaled to [0, 1)"})
    mixture_components: int = field(default=5, metadata={
        "help": "components M of the logistic mixture (3 M decoder outputs a pixel)"})
    objective: Literal["elbo", "iwae"] = field(default="elbo", metadata={
        "help": "training objective: ELBO (analytic KL where both q and p are Gaussian, else Monte Carlo) "
                "or the K-sample importance-weighted bound"})
    num_particles: int = field(default=1, metadata={"help": "samples per example (K for iwae)"})
    kl_warmup_epochs: float = field(default=0.0, metadata={
        "help": "linearly raise the KL weight from 0 to 1 over this many epochs (ELBO only)"})
    posterior_flow: str = field(default=NO_FLOW, metadata={"help": ChoicesHelp(
        "flow on the guide's Gaussian, its parameters from the encoder's features h(x) (amortised; "
        "models.flows.vae_families); none: Gaussian q", lambda: describe_families("posterior"))})
    flow_length: int = field(default=4, metadata={
        "help": "layers of the posterior flow (reflections for householder); 0 is the Gaussian guide"})
    flow_context: int = field(default=64, metadata={
        "help": "encoder features h(x) that set the posterior flow's parameters"})
    flow_hidden: tuple[int, ...] = field(default=(256,), metadata={
        "help": "hidden sizes of the flow networks (IAF/MAF MADEs, RealNVP conditioners; a MADE needs >= L units)"})
    flow_options: Optional[tuple[str, ...]] = field(default=None, metadata={"help": ChoicesHelp(
        "the posterior flow family's own options, KEY=VALUE ... (values as JSON)",
        lambda: describe_options("posterior"))})
    prior_flow: str = field(default=NO_FLOW, metadata={"help": ChoicesHelp(
        "learned flow prior p(z) = g # N(0, I) (models.flows.vae_families); none: N(0, I)",
        lambda: describe_families("prior"))})
    prior_flow_length: int = field(default=4, metadata={"help": "layers of the prior flow"})
    prior_flow_options: Optional[tuple[str, ...]] = field(default=None, metadata={"help": ChoicesHelp(
        "the prior flow family's own options, KEY=VALUE ...", lambda: describe_options("prior"))})
    prior_flow_lr_scale: float = field(default=0.01, metadata={
        "help": "the prior flow learns at --lr times this (0 freezes it at the identity, N(0, I)); at 1 it "
                "tracks the aggregate posterior before the decoder uses z and the posterior collapses"})
    sylvester_columns: Optional[int] = field(default=None, metadata={
        "help": "columns M <= L of Q in orthogonal Sylvester layers (unset: L); as --flow-options columns=M"})
    sylvester_reflections: int = field(default=8, metadata={
        "help": "Householder reflections making Q in each sylvester_householder layer; as --flow-options "
                "reflections=K"})

    def __post_init__(self) -> None:
        """Fill the options left unset from the preset (an unknown preset is left for ``validate``)."""
        for name, value in PRESETS.get(self.preset, PRESETS["none"]).items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @property
    def has_posterior_flow(self) -> bool:
        return self.posterior_flow != NO_FLOW and self.flow_length > 0

    @property
    def has_prior_flow(self) -> bool:
        return self.prior_flow != NO_FLOW and self.prior_flow_length > 0

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise DGMError(f"unknown --preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.latent_dim < 1:
            raise DGMError(f"--latent-dim must be at least 1, got {self.latent_dim}")
        if self.mixture_components < 1:
            raise DGMError(f"--mixture-components must be at least 1, got {self.mixture_components}")
        if self.num_particles < 1:
            raise DGMError(f"--num-particles must be at least 1, got {self.num_particles}")
        if any(h < 1 for h in self.hidden):
            raise DGMError(f"--hidden sizes must be positive, got {self.hidden}")
        if not self.prior_flow_lr_scale >= 0:
            raise DGMError(f"--prior-flow-lr-scale must be >= 0, got {self.prior_flow_lr_scale}")
        if self.kl_warmup_epochs < 0:
            raise DGMError("--kl-warmup-epochs must be >= 0")
        if self.objective == "iwae" and self.kl_warmup_epochs:
            raise DGMError("--kl-warmup-epochs applies to the ELBO objective only")
        resolve_flow(self, "posterior")
        resolve_flow(self, "prior")


class VAE(GenerativeModel):
    """Encoder mu_phi, sigma_phi; decoder f_theta; ``model`` and ``guide`` as in the module docstring."""

    mean_label = "decoder means E[x | z], z ~ p(z)"

    def __init__(self, config: VAEConfig, spec: DatasetSpec):
        super().__init__(spec)
        self.config = config
        self.head = likelihood(config.likelihood, spec, mixture_components=config.mixture_components)
        channels, height, width = spec.shape
        out_shape = (channels * self.head.params_per_pixel(spec.levels), height, width)
        encoder_cls, decoder_cls = (MLPEncoder, MLPDecoder) if config.arch == "mlp" else (ConvEncoder, ConvDecoder)
        latent = config.latent_dim
        #: features h(x) the encoder adds for the posterior flow's parameters (none without a flow)
        self.context_dim = config.flow_context if config.has_posterior_flow else 0
        self.encoder = encoder_cls(spec.shape, config.hidden, 2 * latent + self.context_dim, config.activation)
        self.decoder = decoder_cls(latent, config.hidden, out_shape, config.activation)
        self.posterior_flow = flow_layers(config, "posterior")
        self.prior_flow = flow_layers(config, "prior")

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encoder_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> the encoder's raw outputs (N, 2 L + context): everything q(z | x) depends on."""
        return self.encoder(x / (self.spec.levels - 1))

    def split_outputs(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw outputs (..., 2 L + context) -> loc (..., L), scale = softplus(.) + 1e-4 (..., L), context."""
        latent = self.latent_dim
        loc, raw_scale, context = h.split([latent, latent, self.context_dim], dim=-1)
        return loc, F.softplus(raw_scale) + 1e-4, context

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> loc, scale of the guide's Gaussian q_0(z_0 | x), each (N, L); inputs scaled to [0, 1]."""
        loc, scale, _ = self.split_outputs(self.encoder_outputs(x))
        return loc, scale

    def posterior(self, h: torch.Tensor) -> dist.TorchDistribution:
        """q(z | x) from the encoder's raw outputs h (N, 2 L + context): the Gaussian, through the flow if any."""
        return flow_posterior(*self.split_outputs(h), self.posterior_flow)

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z) with event shape (L,): N(0, I_L), or the flow prior g # N(0, I_L)."""
        zeros = like.new_zeros(self.latent_dim)
        return flow_prior(dist.Normal(zeros, torch.ones_like(zeros)).to_event(1), self.prior_flow)

    def observation(self, z: torch.Tensor) -> dist.TorchDistribution:
        """p(x | z) with event shape (C, H, W)."""
        return self.head.distribution(self.decoder(z), self.spec)

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x))
            y = x + sample_noise(x) if self.head.dequantized else x
            pyro.sample("x", self.observation(z), obs=y)

    def guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(self.encoder_outputs(x)))
            if self.head.dequantized:
                pyro.sample(NOISE_SITE, uniform_noise(x))

    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """recon = log p(x | z) and kl (N,) for z ~ q(z | x) from the same distributions as ``model`` and
        ``guide`` (``models.protocols.DirectELBO``); None for the dequantized head, whose noise site u the
        Pyro program handles."""
        if self.head.dequantized:
            return None
        q = self.posterior(self.encoder_outputs(x))
        z = q.rsample()
        p = self.prior(x)
        recon = self.observation(z).log_prob(x)
        if isinstance(q, dist.Independent) and isinstance(p, dist.Independent) and not len(self.posterior_flow):
            kl = kl_divergence(q, p.expand(q.batch_shape))
        else:  # a flow on either side: the Monte-Carlo term of the same sample (the cached pass scores z)
            kl = q.log_prob(z) - p.log_prob(z)
        return recon, kl

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] on the data scale, (..., C, H, W)."""
        return self.head.mean(self.decoder(z), self.spec)

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor:
        like = next(self.parameters())
        z = torch.randn(n, self.latent_dim, device=like.device, dtype=like.dtype)
        if len(self.prior_flow):
            z = self.prior_flow_forward(z)
        if mean:
            return self.decode_mean(z)
        draw = self.observation(z).sample()
        return quantize(draw, self.spec.levels) if self.head.dequantized else draw

    def prior_flow_forward(self, eps: torch.Tensor) -> torch.Tensor:
        """z = g(eps): base draws (..., L) through the prior flow (the identity without one)."""
        for layer in self.prior_flow:
            eps = layer(eps)
        return eps

    def training_objective(self) -> ObjectiveRequest:
        """ELBO with ``num_particles`` samples (vectorised) and KL warm-up, or the IWAE bound with K = ``num_particles``."""
        return ObjectiveRequest(self.config.objective, self.config.num_particles, self.config.kl_warmup_epochs)

    def final_figures(self, run_dir: Path, test_images: torch.Tensor | None = None, label: str = "vae") -> None:
        """For a 2-D latent space: decoder means on a grid of z placed by the inverse normal CDF (then
        through the prior flow, if any: quantiles of the base distribution mapped by g)."""
        if self.latent_dim != 2:
            return
        steps = 20
        with torch.no_grad():
            z = self.prior_flow_forward(manifold_latents(steps).to(next(self.parameters()).device))
        save_image_grid(self.decode_mean(z), self.spec.levels, run_dir / "manifold.png",
                        title=f"{label}: decoder means E[x | z] on a 2-D latent grid z = Φ⁻¹(u)", nrow=steps)

    def learning_rate_groups(self) -> list[tuple[list[torch.nn.Parameter], float]]:
        """Everything at the trainer's rate, the prior flow's parameters at ``prior_flow_lr_scale`` times it.

        Why (issue #20): Adam moves each weight of the prior's zero-initialised output layers by ~lr a
        step whatever the gradient's size, so at the full rate g # N(0, I) tracks the aggregate
        posterior within ~100 steps, while the decoder still ignores z; KL(q || p) then falls to
        under 1 nat, q and p widen together, and the posterior stays collapsed (the experiments:
        README, "VAEs with normalizing flows"; the runs: ``benchmarks/RESULTS.md``).
        """
        prior = list(self.prior_flow.parameters())
        if not prior:
            return [(list(self.parameters()), 1.0)]
        in_prior = {id(p) for p in prior}
        rest = [p for p in self.parameters() if id(p) not in in_prior]
        return [(rest, 1.0), (prior, self.config.prior_flow_lr_scale)]

    @torch.no_grad()
    def validation_extras(self, x: torch.Tensor) -> dict[str, float]:
        return {"active_units": float(active_units(self, x))}


def active_units(vae: VAE, x: torch.Tensor, threshold: float = 1e-2, chunk: int = 1000) -> int:
    """Burda et al. (2016): A_u = Cov_x(E_{q(z|x)}[z_u]) ; a unit is active if A_u > threshold."""
    means = torch.cat([vae.encode(x[i:i + chunk])[0] for i in range(0, x.shape[0], chunk)])
    return int((means.double().var(dim=0) > threshold).sum())


@register_model("vae", VAEConfig, description="variational autoencoder; Bernoulli, categorical, logistic-mixture or dequantized-Gaussian pixels")
def build_vae(config: VAEConfig, spec: DatasetSpec) -> VAE:
    """Build a :class:`VAE` for data set ``spec`` (refuses data its likelihood cannot represent)."""
    return VAE(config, spec)
