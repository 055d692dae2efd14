"""The generative adversarial network (Goodfellow et al. 2014) as a Pyro generative story.

Generative story, for each image in ``pyro.plate("data", N)``::

    z ~ N(0, I_L)                                   latent code, L = latent_dim
    p = G(z) = sigmoid(g(z))  in [0, 1]^(C x H x W)  the generator's image
    x ~ Binomial(levels - 1, p)  per pixel           Bernoulli(p) for binary data

The generator is trained adversarially on p (the discriminator compares p with real images scaled
to [0, 1]), never through this observation model. The observation model only quantizes p onto
the data's levels so that samples live on the data scale (as every model's samples do) and so
that the story is a proper distribution over the discrete data: the likelihood estimators then
treat a GAN like any decoder model (its log p(x) is poor, since nothing fitted the pixel noise).
Binomial(levels - 1, p) is the sum of levels - 1 Bernoulli(p) pixels: mean (levels - 1) p, no
extra parameter, and exactly Bernoulli(p) for binary data.

``--observation gaussian --obs-sigma s`` replaces the Binomial by a Gaussian of fixed standard
deviation s on the uniformly dequantized image scaled to [0, 1) (Wu et al. 2017, "On the
quantitative analysis of decoder-based generative models"; ``models.dequantized``)::

    u ~ U[0, 1)^D,    (x + u) / L ~ N(G(z), s^2 I)     observed on the integer scale (Jacobian L^-D)

s is not trained: ``evaluation.gan_likelihood`` chooses it on validation data, as Wu et al. do.

Guide: z ~ p(z), the prior (a GAN has no encoder), so that ``elbo`` is E_p(z)[log p(x | z)] and
``importance_sampled`` equals ``naive_monte_carlo``; both stay correct estimators.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, get_args

import pyro
import pyro.distributions as dist
import torch

from core.errors import DGMError
from data.specs import DatasetSpec
from models.base import GenerativeModel
from models.dequantized import NOISE_SITE, check_sigma, dequantized_gaussian, quantize, sample_noise, uniform_noise
from models.gan.networks import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator, conv_stages
from models.registry import register_model

LossName = Literal["minimax", "non_saturating", "hinge", "wgan_gp"]
#: the adversarial losses a GAN can be trained with (``inference.objectives.adversarial_losses`` defines them)
LOSS_NAMES: tuple[str, ...] = get_args(LossName)


@dataclass
class GANConfig:
    """Options of ``python -m inference.train gan`` (networks, and the adversarial game)."""

    arch: Literal["mlp", "dcgan"] = field(default="dcgan", metadata={
        "help": "DCGAN-style convolutional pair or MLP pair"})
    latent_dim: int = field(default=64, metadata={"help": "latent dimensions L of z ~ N(0, I)"})
    hidden: tuple[int, ...] = field(default=(256, 512), metadata={
        "help": "hidden sizes of the MLP generator (the MLP discriminator mirrors them)"})
    channels: int = field(default=32, metadata={
        "help": "DCGAN width: channels of the discriminator's first and the generator's last convolution"})
    d_dropout: float = field(default=0.3, metadata={
        "help": "dropout after each hidden layer of the discriminator (0: none)"})
    loss: LossName = field(default="non_saturating", metadata={
        "help": "minimax (Goodfellow's log(1 - D(G(z)))), non_saturating (-log D(G(z))), hinge, or wgan_gp"})
    d_steps: int = field(default=1, metadata={
        "help": "discriminator updates per generator update (5 is usual for wgan_gp)"})
    d_lr: Optional[float] = field(default=None, metadata={
        "help": "learning rate of the discriminator (None: the same as --lr)"})
    adam_betas: tuple[float, ...] = field(default=(0.5, 0.999), metadata={
        "help": "Adam's beta1 beta2 for both networks (DCGAN uses 0.5 0.999; WGAN-GP 0.0 0.9)"})
    gp_weight: float = field(default=10.0, metadata={"help": "weight lambda of the WGAN-GP gradient penalty"})
    observation: Literal["binomial", "gaussian"] = field(default="binomial", metadata={
        "help": "p(x | z) for likelihood estimates: binomial over the levels, or gaussian on dequantized data "
                "scaled to [0, 1) with fixed std --obs-sigma (Wu et al. 2017); never used in training"})
    obs_sigma: float = field(default=0.1, metadata={
        "help": "std of the gaussian observation on the [0, 1) scale (evaluation.gan_likelihood picks it on "
                "validation data)"})
    val_samples: int = field(default=2000, metadata={
        "help": "generated and validation images compared each epoch for val_fd, which picks best.pt "
                "(0: no validation; best.pt is the last epoch)"})

    def validate(self) -> None:
        if self.loss not in LOSS_NAMES:
            raise DGMError(f"unknown GAN loss {self.loss!r}; choose one of {', '.join(LOSS_NAMES)}")
        if self.latent_dim < 1:
            raise DGMError(f"--latent-dim must be at least 1, got {self.latent_dim}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise DGMError(f"--hidden sizes must be positive, got {self.hidden}")
        if self.channels < 2:
            raise DGMError(f"--channels must be at least 2, got {self.channels}")
        if self.d_steps < 1:
            raise DGMError(f"--d-steps must be at least 1, got {self.d_steps}")
        if self.d_lr is not None and not self.d_lr > 0:
            raise DGMError(f"--d-lr must be positive, got {self.d_lr}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise DGMError(f"--adam-betas takes two numbers in [0, 1), got {' '.join(map(str, self.adam_betas))}")
        if not 0 <= self.d_dropout < 1:
            raise DGMError(f"--d-dropout must be in [0, 1), got {self.d_dropout}")
        if self.gp_weight < 0:
            raise DGMError(f"--gp-weight must be >= 0, got {self.gp_weight}")
        if self.val_samples < 0:
            raise DGMError(f"--val-samples must be >= 0, got {self.val_samples}")
        if self.observation not in ("binomial", "gaussian"):
            raise DGMError(f"unknown --observation {self.observation!r}; choose binomial or gaussian")
        check_sigma(self.obs_sigma)


class GAN(GenerativeModel):
    """Generator and discriminator; ``model``/``guide`` as in the module docstring.

    Both networks live in this module, so ``state_dict`` (and every checkpoint) holds the whole
    adversarial game; ``latent_size`` is saved with them so that a checkpoint of another latent
    size is refused by name.
    """

    mean_label = "generator means E[x | z] = G(z)"

    def __init__(self, config: GANConfig, spec: DatasetSpec):
        super().__init__(spec)
        self.config = config
        channels, height, width = spec.shape
        if config.arch == "dcgan":
            stride = 2 ** conv_stages(height)
            if height % stride or width % stride:
                raise DGMError(f"the dcgan networks need image sides divisible by {stride}; {spec.name} is "
                               f"{height}x{width}")
            self.generator = DCGANGenerator(config.latent_dim, config.channels, spec.shape)
            self.discriminator = DCGANDiscriminator(spec.shape, config.channels, config.d_dropout)
        else:
            self.generator = MLPGenerator(config.latent_dim, config.hidden, spec.shape)
            self.discriminator = MLPDiscriminator(spec.shape, tuple(reversed(config.hidden)), config.d_dropout)
        self.register_buffer("latent_size", torch.tensor(config.latent_dim))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # ---- the generator ------------------------------------------------------------------------
    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """g(z): latent codes (..., L) -> generator logits (..., C, H, W); any leading batch shape."""
        if z.dim() < 1 or z.shape[-1] != self.latent_dim:
            raise DGMError(f"latent codes have {z.shape[-1] if z.dim() else 0} dimensions, but the generator "
                           f"takes latent_dim {self.latent_dim}")
        batch = z.shape[:-1]
        out = self.generator(z.reshape(-1, self.latent_dim))
        return out.reshape(*batch, *self.spec.shape)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) = sigmoid(g(z)): the generator's images in [0, 1], (..., C, H, W); differentiable."""
        return torch.sigmoid(self.logits(z))

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Real images on the data scale 0..levels-1 -> [0, 1], the scale the discriminator sees."""
        return x / (self.spec.levels - 1)

    # ---- the Pyro story -----------------------------------------------------------------------
    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z) = N(0, I_L), event shape (L,)."""
        zeros = like.new_zeros(self.latent_dim)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    @property
    def dequantized(self) -> bool:
        """Whether the observation is a density of x + u (gaussian) rather than a distribution over levels."""
        return self.config.observation == "gaussian"

    def observation(self, logits: torch.Tensor) -> dist.TorchDistribution:
        """p(x | z), event (C, H, W): Binomial(levels - 1, sigmoid(logits)) per pixel (Bernoulli for binary),
        or with ``observation="gaussian"`` the density of x + u with (x + u) / L ~ N(sigmoid(logits), s^2)."""
        if self.dequantized:
            loc = torch.sigmoid(logits)
            return dequantized_gaussian(loc, torch.full_like(loc, self.config.obs_sigma), self.spec.levels)
        if self.spec.binary:
            return dist.Bernoulli(logits=logits, validate_args=False).to_event(3)
        return dist.Binomial(total_count=self.spec.levels - 1, logits=logits, validate_args=False).to_event(3)

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x))
            y = x + sample_noise(x) if self.dequantized else x
            pyro.sample("x", self.observation(self.logits(z)), obs=y)

    def guide(self, x: torch.Tensor) -> None:
        """q(z | x) = p(z) (and q(u) = p(u)): no encoder; importance weights reduce to p(x | z)."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.prior(x))
            if self.dequantized:
                pyro.sample(NOISE_SITE, uniform_noise(x))

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor:
        """``n`` images on the data scale: x ~ p(x | z), or with ``mean=True`` E[x | z] = (levels - 1) G(z)."""
        device = self.latent_size.device
        z = torch.randn(n, self.latent_dim, device=device)
        logits = self.logits(z)
        if mean:
            return torch.sigmoid(logits) * (self.spec.levels - 1)
        draw = self.observation(logits).sample()
        return quantize(draw, self.spec.levels) if self.dequantized else draw

    def training_objective(self) -> Any:
        raise DGMError("a GAN is trained by the adversarial trainer (python -m inference.train gan), not by SVI")

    # ---- checkpoints --------------------------------------------------------------------------
    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Refuse, by name, weights of a generator with another latent size before torch's shape errors."""
        saved = state_dict.get("latent_size") if hasattr(state_dict, "get") else None
        if saved is not None and int(saved) != self.latent_dim:
            raise DGMError(f"the checkpoint's generator takes latent_dim {int(saved)}, but the config asks for "
                           f"latent_dim {self.latent_dim}")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


@register_model("gan", GANConfig, trainer="adversarial",
                description="generative adversarial network (MLP or DCGAN pair), adversarial trainer",
                train_defaults={"lr": 2e-4, "batch_size": 64})
def build_gan(config: GANConfig, spec: DatasetSpec) -> GAN:
    """Build a :class:`GAN` for data set ``spec`` (every data set: Bernoulli or Binomial pixels)."""
    return GAN(config, spec)
