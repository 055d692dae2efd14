"""User programs written as a user would, for the tests of the Python API of user programs (issue #16)."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

D = 3  # data dimensions
LOADINGS = torch.tensor([1.0, 2.0, -1.5])


def gaussian_data(n: int = 200, seed: int = 0) -> torch.Tensor:
    """x = z w + 0.5 e, z ~ N(0, 1), e ~ N(0, I): (n, D)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, generator=g) * LOADINGS + 0.5 * torch.randn(n, D, generator=g)


class GaussianProgram(nn.Module):
    """z ~ N(0, 1), x | z ~ N(z w, s^2 I): w and the encoder in the module, s a pyro.param. Closed form:
    x ~ N(0, s^2 I + w w^T)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((D,), 0.1))
        self.encoder = nn.Linear(D, 2)

    def model(self, x: torch.Tensor) -> None:
        s = pyro.param("s", torch.tensor(1.0), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z[..., None] * self.w, s).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        h = self.encoder(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(h[..., 0], h[..., 1].exp()))

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        s = pyro.param("s")
        cov = s**2 * torch.eye(D) + torch.outer(self.w, self.w)
        return torch.distributions.MultivariateNormal(torch.zeros(D), cov).log_prob(x)


def store_model(x: torch.Tensor) -> None:
    """Parameters in Pyro's param store only: x ~ N(mu + z, sigma^2 I), z ~ N(0, 1)."""
    mu = pyro.param("mu", torch.zeros(D))
    sigma = pyro.param("sigma", torch.tensor(1.0), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(mu + z[..., None], sigma).to_event(1), obs=x)


def store_guide(x: torch.Tensor) -> None:
    a = pyro.param("guide.a", torch.zeros(D))
    log_scale = pyro.param("guide.log_scale", torch.tensor(0.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x @ a, log_scale.exp()))


def missing_latent_model(x: torch.Tensor) -> None:
    """A model latent 'e' the guide below does not sample."""
    mu = pyro.param("mu", torch.zeros(D))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        e = pyro.sample("e", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(mu + (z + e)[..., None], 1.0).to_event(1), obs=x)


def missing_latent_guide(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
