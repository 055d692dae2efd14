"""Probabilistic PCA (Tipping & Bishop 1999) as a Pyro model: the ground truth of the estimators.

Generative story, for each example in ``pyro.plate("data", N)``, on a scale ``s`` (1 for real
vectors, the number of levels for images, so that the parameters live on the unit scale)::

    z ~ N(0, I_L)                                      latent, L = latent_dim
    y ~ N(s (W z + mu), s^2 sigma^2 I_D)               W (D, L), mu (D,), sigma > 0

Everything is in closed form:

    log p(y)  = log N(y; s mu, s^2 (W W^T + sigma^2 I_D))                 (Woodbury, LowRankMultivariateNormal)
    p(z | y)  = N(M^{-1} W^T (y/s - mu), sigma^2 M^{-1}),  M = W^T W + sigma^2 I_L

Two guides: ``exact_guide`` samples the exact posterior (a full-covariance MultivariateNormal), so
every importance weight equals p(y) and the importance-sampled estimate is log p(y) for any K;
``diagonal_guide`` is a poorer amortised linear-Gaussian q(z | y) = N(A y/s + b, diag(exp(2 c))),
whose KL to the exact posterior is known in closed form (``models.gaussian_kl``), so
E_q[log w] = log p(y) - KL(q || p(z | y)) is known too. ``config.guide`` picks ``guide``.

Data. Built with a data set spec (``python -m inference.train ppca --dataset digits``), PPCA models
the flattened images as a continuous density of *uniformly dequantized* data: a latent
u ~ U[0, 1)^D in model and guide, y = x + u, so that every estimate is of the discrete log P(x)
(``elbo`` gives the dequantization bound E_u log p(x + u) <= log P(x); ``importance_sampled`` rises
to log P(x)), and bits/dim are those of the discrete data. There ``log_marginal`` refuses (P(x) is a
Gaussian integral over a box). With ``--images centres`` it is instead a density of the bin centres
y = x + 1/2 (no dequantization latent): log p(y) is then closed form, so the ``exact`` estimator applies
and naive Monte Carlo, the ELBO and importance sampling can be measured against the truth on image data
(a density, not a probability of the discrete data: by the midpoint rule it approximates log P(x) where
the density varies little over one bin, but it is not a bound). Built with ``PPCA.vectors(config, D)`` or
``PPCA.random(...)``, it models real vectors (N, D) with no dequantization: the tests' and notebooks'
ground truth.

Maximum likelihood in closed form (Tipping & Bishop 1999, eqs. 7-8; ``--fit closed_form``,
:meth:`PPCA.fit_closed_form`): with S the covariance of the (unit-scale) data and eigenvalues
lambda_1 >= ... >= lambda_D, eigenvectors U,

    mu = mean,   sigma^2 = mean(lambda_{L+1..D}),   W = U_L (Lambda_L - sigma^2 I)^{1/2} R

maximise the mean log p(y) for any rotation R (``--rotation``: R = I, or a fixed random one so that the
posterior is correlated and a diagonal guide is only an approximation). For dequantized images the training objective with the exact guide is the
dequantization bound E_u log p(x + u), whose maximiser is the same fit to the moments of x + u: mean
xbar + 1/2 and covariance S_x + I/12 (u is independent of x with variance 1/12 per pixel).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from core.errors import DGMError
from data.specs import DatasetSpec
from models.base import GenerativeModel, check_images
from models.gaussian_kl import kl_diagonal_to_full
from models.registry import register_model


@dataclass
class PPCAConfig:
    """Options of ``python -m inference.train ppca``."""

    latent_dim: int = field(default=10, metadata={"help": "latent dimensions L (at most the data dimension D)"})
    guide: Literal["exact", "diagonal"] = field(default="exact", metadata={
        "help": "exact: the closed-form posterior (full covariance), so training is exact maximum likelihood; "
                "diagonal: an amortised mean-field Gaussian (a deliberately poorer guide)"})
    images: Literal["dequantized", "centres"] = field(default="dequantized", metadata={
        "help": "dequantized: y = x + u with a latent u ~ U[0, 1)^D, so estimates are of the discrete P(x); "
                "centres: a density of the bin centres x + 1/2 with a closed-form log p (the exact estimator "
                "applies; a density, not a probability of the discrete data)"})
    rotation: Literal["principal", "random"] = field(default="principal", metadata={
        "help": "columns of the closed-form W: principal, W = U (Lambda - sigma^2 I)^1/2 (orthogonal columns, so the "
                "posterior covariance is diagonal and the diagonal guide is exact); random, that W times a fixed "
                "random rotation (seed 0): the same likelihood, a correlated posterior, so the diagonal guide is an "
                "approximation as a learnt encoder's is"})
    fit: Literal["svi", "closed_form"] = field(default="svi", metadata={
        "help": "svi: gradient steps on the training objective; closed_form: the maximum-likelihood fit of "
                "Tipping & Bishop (1999) from the training data's covariance in one epoch (the diagonal guide "
                "set to its mean-field optimum); later epochs repeat it"})

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise DGMError(f"--latent-dim must be at least 1, got {self.latent_dim}")


class PPCA(GenerativeModel):
    """Linear-Gaussian latent variable model; see the module docstring for the math and the two modes."""

    def __init__(self, config: PPCAConfig, spec: DatasetSpec | None = None, data_dim: int | None = None):
        super().__init__(spec)  # type: ignore[arg-type]  (None: real vectors, no data set)
        if spec is None and data_dim is None:
            raise ValueError("PPCA needs a data set spec or a data dimension")
        self.config = config
        self.discrete = spec is not None
        #: images modelled with the dequantization latent u (else real vectors, or the bin centres x + 1/2)
        self.dequantized = self.discrete and config.images == "dequantized"
        self.offset = 0.5 if self.discrete and not self.dequantized else 0.0
        self.data_dim = spec.dim if spec is not None else int(data_dim)  # type: ignore[arg-type]
        self.scale = float(spec.levels) if spec is not None else 1.0
        dim, latent = self.data_dim, config.latent_dim
        if latent > dim:
            raise DGMError(f"--latent-dim {latent} exceeds the data dimension {dim}")
        self.weight = nn.Parameter(0.1 * torch.randn(dim, latent))
        self.bias = nn.Parameter(torch.full((dim,), 0.5 if self.discrete else 0.0))
        self.log_noise = nn.Parameter(torch.tensor(math.log(0.3 if self.discrete else 1.0)))
        self.enc_weight = nn.Parameter(torch.zeros(dim, latent))
        self.enc_bias = nn.Parameter(torch.zeros(latent))
        self.enc_log_scale = nn.Parameter(torch.zeros(latent))

    # ---- constructors for real vectors -----------------------------------------------------
    @classmethod
    def vectors(cls, config: PPCAConfig, data_dim: int) -> "PPCA":
        """A PPCA of real vectors (N, D), without dequantization."""
        return cls(config, None, data_dim)

    @classmethod
    def random(cls, data_dim: int, latent_dim: int, *, weight_scale: float = 1.0, noise: float = 1.0,
               guide: Literal["exact", "diagonal"] = "exact", seed: int = 0,
               dtype: torch.dtype = torch.float64) -> "PPCA":
        """A PPCA of real vectors with W_ij ~ N(0, weight_scale^2), mu_i ~ N(0, 1), sigma = ``noise``;
        its diagonal guide set to the mean-field optimum (:meth:`set_mean_field_guide`)."""
        gen = torch.Generator().manual_seed(seed)
        model = cls.vectors(PPCAConfig(latent_dim=latent_dim, guide=guide), data_dim).to(dtype)
        with torch.no_grad():
            model.weight.copy_(weight_scale * torch.randn(data_dim, latent_dim, generator=gen, dtype=dtype))
            model.bias.copy_(torch.randn(data_dim, generator=gen, dtype=dtype))
            model.log_noise.fill_(math.log(noise))
        model.set_mean_field_guide()
        return model.eval()

    # ---- closed forms ----------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def noise(self) -> torch.Tensor:
        """sigma on the unit scale."""
        return self.log_noise.exp()

    @property
    def has_log_marginal(self) -> bool:
        """log p(x) is closed-form for real vectors and bin centres; for dequantized images it is a box integral."""
        return not self.dequantized

    @property
    def discrete_likelihood(self) -> bool:
        """Whether its estimates are of the probability of discrete data (False: a density)."""
        return self.dequantized

    @property
    def fits_in_closed_form(self) -> bool:
        """``--fit closed_form``: the trainer calls :meth:`fit_closed_form` instead of gradient steps."""
        return self.config.fit == "closed_form"

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).to(self.weight.dtype)

    @torch.no_grad()
    def fit_closed_form(self, x: torch.Tensor) -> float:
        """Set W, mu, sigma to the maximum-likelihood fit to ``x`` (module docstring; the dequantization bound's
        maximiser for dequantized images) and the diagonal guide to its mean-field optimum; returns the
        maximised mean training objective (nats per example): mean log p(y), or mean E_u log p(x + u)."""
        y = x.reshape(x.shape[0], -1).to(torch.float64) + self.offset
        n, dim, latent = y.shape[0], self.data_dim, self.latent_dim
        if latent >= dim:
            raise DGMError(f"the closed-form fit needs --latent-dim below the data dimension {dim} (sigma^2 is the "
                           "mean of the discarded eigenvalues)")
        if n < 2:
            raise DGMError("the closed-form fit needs at least 2 training examples")
        mean = y.mean(0)
        centred = y - mean
        cov = centred.T @ centred / n  # the maximum-likelihood (biased) covariance
        if self.dequantized:  # moments of x + u, u ~ U[0, 1)^D independent of x
            mean = mean + 0.5
            cov = cov + torch.eye(dim, dtype=cov.dtype) / 12
        mean, cov = mean / self.scale, cov / self.scale ** 2
        values, vectors = torch.linalg.eigh(cov)  # ascending
        values, vectors = values.flip(0), vectors.flip(1)
        noise2 = values[latent:].mean().clamp(min=1e-12)
        weight = vectors[:, :latent] * (values[:latent] - noise2).clamp(min=0).sqrt()
        if self.config.rotation == "random":  # W R for an orthogonal R: p(y) is unchanged
            gen = torch.Generator().manual_seed(0)
            rotation, _ = torch.linalg.qr(torch.randn(latent, latent, generator=gen, dtype=torch.float64))
            weight = weight @ rotation
        self.weight.copy_(weight.to(self.weight.dtype))
        self.bias.copy_(mean.to(self.bias.dtype))
        self.log_noise.fill_(0.5 * float(noise2.log()))
        self.set_mean_field_guide()
        # at the maximum tr(C^-1 S) = D: mean log p = -(D log 2 pi + log det C + D) / 2, C on the data scale
        log_det = values[:latent].log().sum() + (dim - latent) * noise2.log() + 2 * dim * math.log(self.scale)
        return float(-0.5 * (dim * math.log(2 * math.pi) + log_det + dim))

    def _precision_factor(self) -> torch.Tensor:
        """Cholesky factor of M = W^T W + sigma^2 I_L, (L, L)."""
        eye = torch.eye(self.latent_dim, dtype=self.weight.dtype, device=self.weight.device)
        return torch.linalg.cholesky(self.weight.T @ self.weight + self.noise.pow(2) * eye)

    def posterior(self, y: torch.Tensor) -> dist.MultivariateNormal:
        """p(z | y) = N(M^{-1} W^T (y/s - mu), sigma^2 M^{-1}) for y (..., D): batch (...), event (L,)."""
        chol = self._precision_factor()
        centred = (y / self.scale - self.bias) @ self.weight  # (..., L)
        loc = torch.cholesky_solve(centred.unsqueeze(-1), chol).squeeze(-1)
        covariance = self.noise.pow(2) * torch.cholesky_inverse(chol)
        return dist.MultivariateNormal(loc, scale_tril=torch.linalg.cholesky(covariance))

    def diagonal_posterior(self, y: torch.Tensor) -> dist.Independent:
        """The diagonal guide's q(z | y) = N(A y/s + b, diag(exp(2 c))): batch (...), event (L,)."""
        loc = (y / self.scale) @ self.enc_weight + self.enc_bias
        return dist.Normal(loc, self.enc_log_scale.exp().expand_as(loc)).to_event(1)

    def marginal(self) -> dist.LowRankMultivariateNormal:
        """p(y) = N(s mu, s^2 (W W^T + sigma^2 I_D)) over y (D,) (before dequantization)."""
        diag = (self.scale * self.noise).pow(2).expand(self.data_dim)
        return dist.LowRankMultivariateNormal(self.scale * self.bias, self.scale * self.weight, diag)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats, (N,), in closed form: real vectors, or the density at the bin centres x + 1/2."""
        if self.dequantized:
            raise DGMError("PPCA on a discrete data set has no closed-form log P(x) (a Gaussian integral over "
                           "each pixel's dequantization bin); use importance_sampled (or train with --images "
                           "centres for a closed-form density)")
        return self.marginal().log_prob(self._flat(x) + self.offset)

    def kl_to_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q(z | x) || p(z | x)) of the diagonal guide, (N,), in closed form; real vectors and bin centres."""
        if self.dequantized:
            raise DGMError("the closed-form KL needs real vectors or bin centres (no dequantization)")
        y = self._flat(x) + self.offset
        q, p = self.diagonal_posterior(y), self.posterior(y)
        return kl_diagonal_to_full(q.base_dist.loc, q.base_dist.scale, p.loc, p.scale_tril)

    @torch.no_grad()
    def set_mean_field_guide(self) -> None:
        """Set the diagonal guide to argmin KL(q || p(z|y)) over diagonal Gaussians: the exact posterior
        mean, variances 1 / Lambda_ii with Lambda = M / sigma^2 the posterior precision."""
        chol = self._precision_factor()
        gain = torch.cholesky_solve(self.weight.T, chol)  # M^{-1} W^T, (L, D)
        self.enc_weight.copy_(gain.T)
        self.enc_bias.copy_(-(gain @ self.bias))
        precision_diag = (chol.pow(2).sum(-1)) / self.noise.pow(2)  # diag(M) / sigma^2
        self.enc_log_scale.copy_(-0.5 * precision_diag.log())

    # ---- the Pyro model and guides ---------------------------------------------------------
    def _dequantize(self, y: torch.Tensor) -> torch.Tensor:
        """y + u with u ~ U[0, 1)^D, a latent site of model and guide alike (dequantized images); the bin
        centres y + 1/2 (``--images centres``); y itself for real vectors."""
        if not self.dequantized:
            return y + self.offset if self.offset else y
        zeros = torch.zeros_like(y)
        return y + pyro.sample("u", dist.Uniform(zeros, torch.ones_like(y)).to_event(1))

    def model(self, x: torch.Tensor) -> None:
        y = self._flat(x)
        with pyro.plate("data", y.shape[0]):
            zeros = y.new_zeros(self.latent_dim)
            z = pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            y = self._dequantize(y)
            loc = self.scale * (z @ self.weight.T + self.bias)
            scale = (self.scale * self.noise).expand(loc.shape)
            pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=y)

    def exact_guide(self, x: torch.Tensor) -> None:
        """z ~ p(z | y), the exact posterior (after u ~ U[0, 1)^D for images)."""
        y = self._flat(x)
        with pyro.plate("data", y.shape[0]):
            pyro.sample("z", self.posterior(self._dequantize(y)))

    def diagonal_guide(self, x: torch.Tensor) -> None:
        """z ~ N(A y/s + b, diag(exp(2 c))) (after u ~ U[0, 1)^D for images)."""
        y = self._flat(x)
        with pyro.plate("data", y.shape[0]):
            pyro.sample("z", self.diagonal_posterior(self._dequantize(y)))

    def guide(self, x: torch.Tensor) -> None:
        """The guide chosen by ``config.guide``."""
        if self.config.guide == "exact":
            self.exact_guide(x)
        else:
            self.diagonal_guide(x)

    # ---- data and samples ------------------------------------------------------------------
    def check_data(self, x: torch.Tensor) -> None:
        """Images of the spec (integers 0..levels-1), or finite real vectors (N, D)."""
        if self.discrete:
            check_images(x, self.spec)
            return
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2 or x.shape[1] != self.data_dim:
            raise DGMError(f"PPCA of real vectors expects a float tensor of shape (N, {self.data_dim}), got "
                           f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        if not torch.isfinite(x).all():
            raise DGMError("PPCA data must be finite real numbers (NaN or infinity found)")

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor:
        """n draws (n, D) of real vectors, or images (n, C, H, W): floor(y) clamped to the levels."""
        z = torch.randn(n, self.latent_dim, dtype=self.weight.dtype, device=self.weight.device)
        v = z @ self.weight.T + self.bias
        if not mean:
            v = v + self.noise * torch.randn_like(v)
        y = self.scale * v
        if not self.discrete:
            return y
        # x = floor(y): E[x | z] ~ s (W z + mu) - 1/2 for mean images, a floor for samples
        values = y - 0.5 if mean else y.floor()
        return values.clamp(0, self.spec.levels - 1).reshape(n, *self.spec.shape)


@register_model("ppca", PPCAConfig, description="probabilistic PCA: closed-form log p(x) and exact posterior "
                "(the estimators' ground truth); images are uniformly dequantized")
def build_ppca(config: PPCAConfig, spec: DatasetSpec) -> PPCA:
    """Build a :class:`PPCA` of the flattened, dequantized images of ``spec``."""
    return PPCA(config, spec)
