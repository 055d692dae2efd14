"""log p(x) by quadrature over a low-dimensional latent space: ground truth for latent-variable models.

For a model whose only latent site is z in R^L (L <= 3, e.g. a VAE with a 2-D latent space), on the
grid G = {-a, -a + h, ..., a}^L with spacing h:

    log p(x) ~= log sum_{g in G} p(x, z_g) h^L = logsumexp_g log p(x, z_g) + L log h

For a smooth integrand that is negligible outside [-a, a]^L this Riemann sum converges faster than
any power of h (it is the trapezoid rule with vanishing end terms), so a modest grid gives log p(x)
to many digits; :func:`log_marginal_grid` is checked against itself at two resolutions in the tests.
log p(x, z_g) comes from the model itself (``poutine.condition`` on z = z_g inside an outer plate
over grid points), so any Pyro model with the data plate works. Nats, float64, shape (N,).
"""
from __future__ import annotations

import math
from typing import Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from core.errors import DGMError
from inference.objectives.importance import per_example_log_prob
from inference.objectives.trace_checks import scored_sites

#: elements of one observation-sized tensor per grid chunk (points * N * D)
ELEMENT_BUDGET = 1 << 22


def latent_grid(latent_dim: int, limit: float, steps: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, float]:
    """The points (steps^L, L) of the regular grid on [-limit, limit]^L and its spacing h."""
    axis = torch.linspace(-limit, limit, steps, dtype=torch.float64)
    mesh = torch.meshgrid(*([axis] * latent_dim), indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1).to(dtype), float(axis[1] - axis[0])


def _latent_sites(model: Callable, x: torch.Tensor) -> dict[str, int]:
    trace = poutine.trace(model).get_trace(x[:1])
    return {name: int(site["value"].shape[-1]) for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)}


def log_marginal_grid(model: Callable, x: torch.Tensor, *, site: str = "z", limit: float = 5.0, steps: int = 201,
                      max_plate_nesting: int = 1) -> torch.Tensor:
    """log p(x) per example (N,) by a Riemann sum of p(x, z) over the grid on [-limit, limit]^L."""
    if steps < 2:
        raise DGMError(f"the quadrature grid needs at least 2 steps per axis, got {steps}")
    latents = _latent_sites(model, x)
    if set(latents) != {site}:
        raise DGMError(f"quadrature needs exactly one latent site {site!r}; the model has {sorted(latents) or 'none'}")
    latent_dim = latents[site]
    if latent_dim > 3:
        raise DGMError(f"quadrature over a {latent_dim}-D latent space needs steps^{latent_dim} points; use L <= 3")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    points, h = latent_grid(latent_dim, limit, steps, dtype)
    points = points.to(x.device)
    dim = -(max_plate_nesting + 1)
    n = x.shape[0]
    per_chunk = max(1, ELEMENT_BUDGET // max(1, n * x[0].numel()))
    parts = []
    with torch.no_grad():
        for start in range(0, points.shape[0], per_chunk):
            z = points[start:start + per_chunk]
            value = z.reshape((z.shape[0],) + (1,) * max_plate_nesting + (latent_dim,))

            def conditioned(data: torch.Tensor, value: torch.Tensor = value) -> None:
                with pyro.plate("_grid_points", value.shape[0], dim=dim):
                    poutine.condition(model, data={site: value})(data)

            trace = poutine.trace(conditioned).get_trace(x)
            names = [name for name, _ in scored_sites(trace)]
            parts.append(per_example_log_prob(trace, names, z.shape[0], n, dim).to(torch.float64))
    log_joint = torch.cat(parts, dim=0)  # (G, N)
    return torch.logsumexp(log_joint, dim=0).cpu() + latent_dim * math.log(h)
