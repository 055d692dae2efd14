"""Posterior diagnostics for decoder models: NUTS samples of p(z | x) and q(z | x) as ArviZ data.

For a handful of images x_1..x_N, NUTS targets the joint posterior prod_n p(z_n | x_n) of the
model as written (z inside ``pyro.plate("data", N)``), so one chain covers all images at once.
Chains run one after another (portable on 2 CPU cores); their draws are stacked on ArviZ's
``chain`` dimension so R-hat and ESS compare them. The guide's samples get the same variable
names and dims, so ``az.plot_posterior``/``az.plot_pair`` can put p(z|x) and q(z|x) side by side.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS

from core.errors import DGMError


@contextlib.contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Parameters without gradients while MCMC differentiates only with respect to z."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def _dims(n_examples: int, latent_dim: int) -> tuple[dict, dict]:
    coords = {"example": np.arange(n_examples), "latent": np.arange(latent_dim)}
    return coords, {"z": ["example", "latent"]}


def nuts_posterior(model: torch.nn.Module, x: torch.Tensor, num_samples: int = 200, warmup_steps: int = 200,
                   num_chains: int = 1, max_tree_depth: int = 6, seed: int = 0):
    """NUTS draws of z ~ p(z | x) for the N images of ``x``: InferenceData with posterior z (chain, draw, N, L)."""
    import arviz as az

    if num_samples < 1 or warmup_steps < 0 or num_chains < 1:
        raise DGMError("NUTS needs num_samples >= 1, warmup_steps >= 0 and num_chains >= 1")
    if not getattr(model, "has_latents", False):
        raise DGMError("posterior sampling needs a model with latent variables")
    chains = []
    with frozen(model):
        for chain in range(num_chains):
            pyro.set_rng_seed(seed + chain)
            kernel = NUTS(model.model, max_tree_depth=max_tree_depth)
            mcmc = MCMC(kernel, num_samples=num_samples,
                        warmup_steps=warmup_steps, num_chains=1, disable_progbar=True)
            mcmc.run(x)
            samples = mcmc.get_samples(group_by_chain=True)
            chains.append((samples["z"].cpu().numpy(), mcmc))
    z = np.concatenate([c[0] for c in chains], axis=0)
    coords, dims = _dims(z.shape[2], z.shape[3])
    diverging = np.zeros(z.shape[:2], dtype=bool)
    for chain, (_, mcmc) in enumerate(chains):
        for indices in mcmc.diagnostics().get("divergences", {}).values():
            diverging[chain, list(indices)] = True
    extra = {"diverging": diverging}
    return az.from_dict(posterior={"z": z}, sample_stats=extra, coords=coords, dims=dims)


def guide_samples(model: torch.nn.Module, x: torch.Tensor, num_samples: int = 200, seed: int = 0):
    """Draws of z ~ q(z | x) in the same layout (one chain), for comparison with :func:`nuts_posterior`."""
    import arviz as az

    pyro.set_rng_seed(seed)
    with torch.no_grad(), pyro.plate("_draws", num_samples, dim=-2):
        trace = poutine.trace(model.guide).get_trace(x)
    z = trace.nodes["z"]["value"].cpu().numpy()[None]  # (1, S, N, L)
    coords, dims = _dims(z.shape[2], z.shape[3])
    return az.from_dict(posterior={"z": z}, coords=coords, dims=dims)


def save_netcdf(idata, path: str | Path) -> Path:
    """Write InferenceData to NetCDF (e.g. ``RUN_DIR/posterior_nuts.nc``) for later analysis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    idata.to_netcdf(str(path))
    return path
