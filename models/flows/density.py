"""A normalizing-flow density of images as a Pyro model, trained by maximum likelihood.

Generative story, for each image in ``pyro.plate("data", N)`` (D = C*H*W, L levels)::

    z ~ N(0, I_D)                               base (``dist.Normal``), temperature T scales it
    y = Rescale(L) . Logit(alpha) . f_K . ... . f_1 (z)        our transforms, base -> data
    u ~ U[0, 1)^D                               dequantization noise (latent site "u")
    observe x + u = y                           site "x", p(y) by the change of variables

Guide: u ~ U[0, 1)^D. The ELBO is then E_u[log p(x + u)] (log q(u) = log p(u) = 0), the uniform
dequantization lower bound on the discrete log P(x); ``importance_sampled`` with K draws of u
rises to log P(x). Both are in nats of the discrete data on the integer scale, so bits/dim need no
correction (``models.flows.preprocessing`` accounts for the logit and rescaling Jacobians). The
shared trainer minimises -E_u log p(x + u): maximum likelihood of the dequantized data, with
``val_elbo`` / ``val_bpd`` the validation bound. Dequantization is a latent site (as in
``models.ppca``), so that every estimator's name says what it computes.
"""
from __future__ import annotations

import math
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
from models.flows.architectures import build_architecture
from models.flows.base import FlowTransform
from models.flows.preprocessing import preprocessing
from models.networks import Activation
from models.registry import register_model


@dataclass
class FlowConfig:
    """Options of ``python -m inference.train flow``."""

    arch: Literal["realnvp_mlp", "maf", "nice"] = field(default="realnvp_mlp", metadata={
        "help": "realnvp_mlp: affine couplings with MLP conditioners; maf: masked autoregressive layers; "
                "nice: additive couplings and a scaling layer"})
    num_layers: int = field(default=8, metadata={"help": "coupling or autoregressive layers"})
    hidden: tuple[int, ...] = field(default=(1024, 1024), metadata={
        "help": "hidden layer sizes of each conditioner (MLP or MADE; a MADE needs at least D-1 units)"})
    mask: Literal["checkerboard", "halves"] = field(default="checkerboard", metadata={
        "help": "coupling masks, alternating with their complement: checkerboard on the image, or halves"})
    activation: Activation = field(default="relu", metadata={"help": "hidden activation of the conditioners"})
    log_scale_bound: Literal["soft", "clamp"] = field(default="soft", metadata={
        "help": "how log-scales are kept in [min, max]: soft (scaled tanh) or clamp (Pyro's)"})
    log_scale_min: float = field(default=-5.0, metadata={"help": "lower bound of the affine log-scales"})
    log_scale_max: float = field(default=3.0, metadata={"help": "upper bound of the affine log-scales"})
    logit: bool = field(default=True, metadata={"help": "model logit(alpha + (1 - 2 alpha) x / L) instead of x / L"})
    logit_alpha: float = field(default=1e-5, metadata={"help": "alpha of the logit pre-processing, in (0, 0.5)"})
    temperature: float = field(default=1.0, metadata={
        "help": "default sampling temperature T (base N(0, T^2 I)) for figures and inference.sample"})

    def validate(self) -> None:
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


class FlowDensity(GenerativeModel):
    """p(y) of dequantized images y = x + u through ``flow`` and the pre-processing transforms."""

    def __init__(self, config: FlowConfig, spec: DatasetSpec):
        super().__init__(spec)
        self.config = config
        self.flow = nn.ModuleList(build_architecture(config, spec.shape))
        self.data_transforms = nn.ModuleList(preprocessing(spec.levels, config.logit_alpha if config.logit else None))
        self.register_buffer("base_loc", torch.zeros(spec.dim))
        self.register_buffer("base_scale", torch.ones(spec.dim))

    def transforms(self) -> list[FlowTransform]:
        """Every transform, base -> data: the flow layers, then Logit and Rescale."""
        return [*self.flow, *self.data_transforms]

    def distribution(self, temperature: float = 1.0) -> dist.TransformedDistribution:
        """p(y) over flattened images y (..., D) on the data scale; base N(0, T^2 I)."""
        base = dist.Normal(self.base_loc, temperature * self.base_scale, validate_args=False).to_event(1)
        return dist.TransformedDistribution(base, self.transforms(), validate_args=False)

    def log_density(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) in nats, (N,), of continuous images y (N, C, H, W) with values in [0, L)."""
        if not isinstance(y, torch.Tensor) or not y.is_floating_point() or tuple(y.shape[1:]) != self.spec.shape:
            raise DGMError(f"expected a float tensor of shape (N, {', '.join(map(str, self.spec.shape))}), got "
                           f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}")
        if y.numel() and (y.min() < 0 or y.max() >= self.spec.levels):
            raise DGMError(f"dequantized values must lie in [0, {self.spec.levels}); got [{y.min().item():g}, "
                           f"{y.max().item():g}]")
        return self.distribution().log_prob(y.flatten(1))

    def _dequantization(self, flat: torch.Tensor) -> dist.TorchDistribution:
        return dist.Uniform(torch.zeros_like(flat), torch.ones_like(flat)).to_event(1)

    def model(self, x: torch.Tensor) -> None:
        self.check_data(x)
        flat = x.flatten(1)
        with pyro.plate("data", x.shape[0]):
            u = pyro.sample("u", self._dequantization(flat))
            pyro.sample("x", self.distribution(), obs=flat + u)

    def guide(self, x: torch.Tensor) -> None:
        """q(u | x) = U[0, 1)^D: uniform dequantization."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("u", self._dequantization(x.flatten(1)))

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False, temperature: float | None = None) -> torch.Tensor:
        """n images (n, C, H, W): x = floor(y) clamped to the levels, y from the flow at temperature T.

        ``mean=True`` returns y - 1/2 unrounded (clamped), a smoother picture of the same draw's
        pixel intensities (a flow has no conditional mean to show)."""
        temperature = self.config.temperature if temperature is None else temperature
        if not temperature > 0:
            raise DGMError(f"the sampling temperature must be positive, got {temperature}")
        y = self.distribution(temperature).sample((n,)).reshape(n, *self.spec.shape)
        return (y - 0.5 if mean else y.floor()).clamp(0, self.spec.levels - 1)

    def final_figures(self, run_dir: Path) -> None:
        """``bpd_curves.png``: train and validation bits/dim per epoch (of the discrete data: the
        dequantization bound -ELBO / (D ln 2), the training objective and ``val_bpd``)."""
        from core.run_dir import METRICS, MetricsLog
        from evaluation.plots import save_curves

        rows = MetricsLog(Path(run_dir) / METRICS).rows()
        if not rows:
            return
        scale = self.spec.dim * math.log(2.0)
        series = {"train (objective)": [float(r["train_loss"]) / scale for r in rows],
                  "validation": [float(r["val_bpd"]) for r in rows]}
        save_curves([int(r["epoch"]) for r in rows], series, "bits/dim (dequantization bound)",
                    Path(run_dir) / "bpd_curves.png", f"flow on {self.spec.name}: bits/dim per epoch")


@register_model("flow", FlowConfig, description="normalizing flow (RealNVP, MAF, NICE) of uniformly dequantized "
                "images, trained by maximum likelihood")
def build_flow(config: FlowConfig, spec: DatasetSpec) -> FlowDensity:
    """Build a :class:`FlowDensity` for data set ``spec``."""
    return FlowDensity(config, spec)
