"""A normalizing-flow density of images as a Pyro model, trained by maximum likelihood.

Generative story, for each image in ``pyro.plate("data", N)`` (D = C*H*W, L levels)::

    z ~ N(0, I)                                 base (``dist.Normal``), temperature T scales it
    y = Rescale(L) . Logit(alpha) . f_K . ... . f_1 (z)        our transforms, base -> data
    u ~ U[0, 1)^(C, H, W)                       dequantization noise (latent site "u")
    observe x + u = y                           site "x", p(y) by the change of variables

The base and the flow live on flattened images (D,) for the vector architectures (realnvp_mlp,
maf, nice) and on images (C, H, W) for the multi-scale ones (realnvp, glow:
``models.flows.multiscale``); the noise u is an image either way.

Guide, ``--dequantization``:

* ``uniform``: u ~ U[0, 1)^D. The ELBO is then E_u[log p(x + u)] (log q(u) = log p(u) = 0), the
  uniform-dequantization lower bound on the discrete log P(x); ``importance_sampled`` with K draws
  of u rises to log P(x).
* ``variational``: u ~ q(u | x), a conditional flow (``models.flows.dequantization``, Flow++) trained
  jointly with p through the same ELBO E_q[log p(x + u) - log q(u | x)], a tighter bound;
  ``importance_sampled`` with K draws from q is Flow++'s importance-sampled log P(x).

All values are in nats of the discrete data on the integer scale, so bits/dim need no correction
(``models.flows.preprocessing`` accounts for the logit and rescaling Jacobians). The shared trainer
minimises the negative ELBO (with uniform noise: maximum likelihood of the dequantized data), with
``val_elbo`` / ``val_bpd`` the validation bound. Dequantization is a latent site (as in
``models.ppca``), so that every estimator's name says what it computes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from core.errors import DGMError
from data.specs import DatasetSpec
from models.base import GenerativeModel
from models.flows.architecture_registry import architecture_spec, describe_architectures
from models.flows.base import FlowTransform, without_value_cache
from models.flows.choices import ChoicesHelp
from models.flows.dequantization import VariationalDequantization
from models.flows.flow_figures import save_flow_figures
from models.flows.log_scale import config_bounds
from models.flows.preprocessing import preprocessing
from models.networks import Activation
from models.registry import register_model


@dataclass
class FlowConfig:
    """Options of ``python -m inference.train flow``."""

    arch: str = field(default="realnvp_mlp", metadata={"help": ChoicesHelp(
        "flow architecture (models.flows.architecture_registry)", describe_architectures)})
    num_layers: int = field(default=8, metadata={"help": "coupling or autoregressive layers (realnvp_mlp, maf, "
                                                         "nice)"})
    hidden: tuple[int, ...] = field(default=(1024, 1024), metadata={
        "help": "hidden layer sizes of each conditioner (MLP or MADE; a MADE needs at least D-1 units) "
                "(realnvp_mlp, maf, nice)"})
    mask: Literal["checkerboard", "halves"] = field(default="checkerboard", metadata={
        "help": "coupling masks, alternating with their complement: checkerboard on the image, or halves "
                "(realnvp_mlp, nice)"})
    activation: Activation = field(default="relu", metadata={"help": "hidden activation of the MLP conditioners"})
    levels: int = field(default=2, metadata={
        "help": "scales of realnvp / glow: realnvp squeezes levels-1 times, glow levels times (28x28: realnvp "
                "up to 3, glow up to 2)"})
    steps: int = field(default=4, metadata={
        "help": "per scale: realnvp couplings per stage (steps checkerboard, steps channel; steps+1 at the "
                "last scale), glow steps per level"})
    channels: int = field(default=64, metadata={"help": "hidden channels of the residual-CNN conditioners "
                                                        "(realnvp, glow)"})
    blocks: int = field(default=2, metadata={"help": "residual blocks per CNN conditioner (realnvp, glow; 0: "
                                                     "conv-relu-conv)"})
    dequantization: Literal["uniform", "variational"] = field(default="uniform", metadata={
        "help": "noise u of y = x + u: uniform U[0,1) or variational, a learned conditional flow q(u|x) (Flow++)"})
    dequant_steps: int = field(default=4, metadata={"help": "couplings of the variational dequantizer"})
    dequant_channels: int = field(default=32, metadata={"help": "hidden channels of the dequantizer's CNNs"})
    dequant_blocks: int = field(default=1, metadata={"help": "residual blocks per CNN of the dequantizer"})
    log_scale_bound: Literal["soft", "clamp"] = field(default="soft", metadata={
        "help": "how log-scales are kept in [min, max]: soft (scaled tanh) or clamp (Pyro's)"})
    log_scale_min: float = field(default=-5.0, metadata={"help": "lower bound of the affine log-scales"})
    log_scale_max: float = field(default=3.0, metadata={"help": "upper bound of the affine log-scales"})
    logit: bool = field(default=True, metadata={"help": "model logit(alpha + (1 - 2 alpha) x / L) instead of x / L"})
    logit_alpha: float = field(default=1e-5, metadata={"help": "alpha of the logit pre-processing, in (0, 0.5)"})
    temperature: float = field(default=1.0, metadata={
        "help": "default sampling temperature T (base N(0, T^2 I)) for figures and inference.sample"})

    def validate(self) -> None:
        architecture_spec(self.arch)
        if self.num_layers < 1:
            raise DGMError(f"--num-layers must be at least 1, got {self.num_layers}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise DGMError(f"--hidden sizes must be positive, got {self.hidden}")
        if not self.log_scale_min < 0.0 < self.log_scale_max:
            raise DGMError(f"need --log-scale-min < 0 < --log-scale-max, got {self.log_scale_min} and "
                           f"{self.log_scale_max}")
        if self.logit and not 0.0 < self.logit_alpha < 0.5:
            raise DGMError(f"--logit-alpha must lie in (0, 0.5), got {self.logit_alpha}")
        if not self.temperature > 0:
            raise DGMError(f"--temperature must be positive, got {self.temperature}")
        for name in ("levels", "steps", "channels", "dequant_steps", "dequant_channels"):
            if getattr(self, name) < 1:
                raise DGMError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("blocks", "dequant_blocks"):
            if getattr(self, name) < 0:
                raise DGMError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(self, name)}")

    @property
    def image(self) -> bool:
        """Whether the architecture works on (C, H, W) images rather than flattened vectors."""
        return architecture_spec(self.arch).event == "image"


class FlowDensity(GenerativeModel):
    """p(y) of dequantized images y = x + u through ``flow`` and the pre-processing transforms."""

    mean_label = "samples (unrounded intensities)"

    def __init__(self, config: FlowConfig, spec: DatasetSpec):
        super().__init__(spec)
        self.config = config
        shape = tuple(spec.shape)
        #: event shape of the base and the flow: (C, H, W) for multi-scale flows, (D,) otherwise
        self.event_shape = shape if config.image else (spec.dim,)
        # p scores data it did not draw: no value caches, so log p(y) is never a value from older weights
        self.flow = without_value_cache(nn.ModuleList(architecture_spec(config.arch).build(config, shape)))
        self.data_transforms = without_value_cache(
            nn.ModuleList(preprocessing(spec.levels, config.logit_alpha if config.logit else None)))
        self.register_buffer("base_loc", torch.zeros(self.event_shape))
        self.register_buffer("base_scale", torch.ones(self.event_shape))
        self.dequantizer = VariationalDequantization(
            shape, shape[0], config.dequant_steps, config.dequant_channels, config.dequant_blocks,
            **config_bounds(config)) if config.dequantization == "variational" else None

    def transforms(self) -> list[FlowTransform]:
        """Every transform, base -> data: the flow layers, then Logit and Rescale."""
        return [*self.flow, *self.data_transforms]

    def to_event(self, images: torch.Tensor) -> torch.Tensor:
        """Images (..., C, H, W) in the flow's event layout: flattened (..., D) for vector architectures."""
        return images if self.config.image else images.flatten(-3)

    def from_event(self, values: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_event`: (..., C, H, W)."""
        return values if self.config.image else values.unflatten(-1, tuple(self.spec.shape))

    def distribution(self, temperature: float = 1.0) -> dist.TransformedDistribution:
        """p(y) over images y in the event layout (:meth:`to_event`) on the data scale; base N(0, T^2 I)."""
        base = dist.Normal(self.base_loc, temperature * self.base_scale, validate_args=False)
        base = base.to_event(len(self.event_shape))
        return dist.TransformedDistribution(base, self.transforms(), validate_args=False)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """z = f^-1(y): continuous images y (N, C, H, W) on the data scale -> base values (N, *event_shape)."""
        v = self.to_event(y)
        for t in reversed(self.transforms()):
            v = t.inv(v)
        return v

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """y = f(z): base values (N, *event_shape) -> continuous images (N, C, H, W) on the data scale."""
        v = z
        for t in self.transforms():
            v = t(v)
        return self.from_event(v)

    def log_density(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) in nats, (N,), of continuous images y (N, C, H, W) with values in [0, L)."""
        if not isinstance(y, torch.Tensor) or not y.is_floating_point() or tuple(y.shape[1:]) != self.spec.shape:
            raise DGMError(f"expected a float tensor of shape (N, {', '.join(map(str, self.spec.shape))}), got "
                           f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}")
        if y.numel() and (y.min() < 0 or y.max() >= self.spec.levels):
            raise DGMError(f"dequantized values must lie in [0, {self.spec.levels}); got [{y.min().item():g}, "
                           f"{y.max().item():g}]")
        return self.distribution().log_prob(self.to_event(y))

    def _uniform_noise(self, x: torch.Tensor) -> dist.TorchDistribution:
        """U[0, 1)^(C, H, W) per image: the prior of u (and the uniform guide)."""
        return dist.Uniform(torch.zeros_like(x), torch.ones_like(x)).to_event(3)

    def dequantization_distribution(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(u | x) of images x (N, C, H, W): uniform, or the variational dequantizer's flow of N(0, I)."""
        if self.dequantizer is None:
            return self._uniform_noise(x)
        context = x / max(self.spec.levels - 1, 1) - 0.5  # the discrete image, centred on the unit scale
        base = dist.Normal(torch.zeros_like(x), torch.ones_like(x), validate_args=False).to_event(3)
        return dist.TransformedDistribution(base, [self.dequantizer.condition(context)], validate_args=False)

    def model(self, x: torch.Tensor) -> None:
        self.check_data(x)
        with pyro.plate("data", x.shape[0]):
            u = pyro.sample("u", self._uniform_noise(x))
            pyro.sample("x", self.distribution(), obs=self.to_event(x + u))

    def guide(self, x: torch.Tensor) -> None:
        """q(u | x): U[0, 1)^D (uniform dequantization) or the learned conditional flow (variational)."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("u", self.dequantization_distribution(x))

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False, temperature: float | None = None) -> torch.Tensor:
        """n images (n, C, H, W): x = floor(y) clamped to the levels, y from the flow at temperature T.

        ``mean=True`` returns y - 1/2 unrounded (clamped), a smoother picture of the same draw's
        pixel intensities (a flow has no conditional mean to show)."""
        temperature = self.config.temperature if temperature is None else temperature
        if not temperature > 0:
            raise DGMError(f"the sampling temperature must be positive, got {temperature}")
        y = self.from_event(self.distribution(temperature).sample((n,)))
        return self.quantize(y, mean)

    def quantize(self, y: torch.Tensor, mean: bool = False) -> torch.Tensor:
        """Continuous images y on the data scale -> floor(y) (or y - 1/2 when ``mean``) clamped to the levels."""
        return (y - 0.5 if mean else y.floor()).clamp(0, self.spec.levels - 1)

    def final_figures(self, run_dir: Path, test_images: torch.Tensor | None = None, label: str = "flow") -> None:
        """``samples_temperatures.png`` and ``interpolation.png`` between the first two test images
        (``models.flows.flow_figures``)."""
        save_flow_figures(self, Path(run_dir), test_images, label)


@register_model("flow", FlowConfig, description="normalizing flow (RealNVP, MAF, NICE; multi-scale RealNVP and "
                "Glow) of dequantized images (uniform or variational), trained by maximum likelihood")
def build_flow(config: FlowConfig, spec: DatasetSpec) -> FlowDensity:
    """Build a :class:`FlowDensity` for data set ``spec``."""
    return FlowDensity(config, spec)
