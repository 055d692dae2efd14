"""The interface every generative model of the project implements.

A model is a ``torch.nn.Module`` (its parameters live in the module, so ``state_dict`` is the whole
trainable state) with a Pyro generative story ``model(x)`` and a guide ``guide(x)``. Every
per-example site sits inside ``pyro.plate("data", N)``; models with no latent site have an empty
guide and are trained by exact maximum likelihood through the same SVI loss.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import DGMError
from data.specs import DatasetSpec


class GenerativeModel(nn.Module):
    """Base class: a Pyro ``model``/``guide`` pair over images (N, C, H, W) on the data scale."""

    #: number of plate dimensions the story uses (the data plate); particles go one further left
    max_plate_nesting: int = 1
    #: whether the story has latent sample sites (False for flows and ARMs)
    has_latents: bool = True

    def __init__(self, spec: DatasetSpec):
        super().__init__()
        self.spec = spec

    def model(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def guide(self, x: torch.Tensor) -> None:
        """No latent sites: an empty guide (exact models)."""

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor:
        """``n`` images (n, C, H, W) on the data scale; ``mean=True`` gives E[x | z] where defined."""
        raise NotImplementedError

    def objective(self) -> Any:
        """The training loss: our ELBO with one sample (exact -log p(x) when there are no latents)."""
        return self.validation_objective()

    def validation_objective(self) -> Any:
        """What validation reports: the ELBO with analytic KL, split into recon and KL."""
        from inference.elbo import AnalyticKLTrace_ELBO

        return AnalyticKLTrace_ELBO(num_particles=1, max_plate_nesting=self.max_plate_nesting)

    def kl_weight(self, epoch: float) -> float:
        """Weight of the KL term at (fractional) ``epoch``; 1 unless the model warms up."""
        return 1.0

    def optimizer_groups(self, lr: float) -> list[dict[str, Any]]:
        """The trainer's optimiser parameter groups (torch's format): by default all parameters at ``lr``."""
        return [{"params": list(self.parameters()), "lr": lr}]

    def final_figures(self, run_dir: Path) -> None:
        """Model-specific figures written once training ends (e.g. the VAE's 2-D manifold)."""

    def validation_extras(self, x: torch.Tensor) -> dict[str, float]:
        """Model-specific validation statistics for ``metrics.csv`` (names without the ``val_`` prefix)."""
        return {}

    def check_data(self, x: torch.Tensor) -> None:
        """Refuse data outside the model's support with a one-line error."""
        check_images(x, self.spec)


def check_images(x: torch.Tensor, spec: DatasetSpec) -> None:
    """``x`` must be a float tensor (N, C, H, W) of integer levels 0..levels-1 of ``spec``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DGMError(f"expected a float tensor of images, got {type(x).__name__} "
                       f"{getattr(x, 'dtype', '')}")
    if tuple(x.shape[1:]) != spec.shape:
        raise DGMError(f"expected images of shape (N, {', '.join(map(str, spec.shape))}) for {spec.name}, "
                       f"got {tuple(x.shape)}")
    if x.numel() and (x.min() < 0 or x.max() > spec.levels - 1 or not torch.equal(x, x.round())):
        raise DGMError(f"{spec.name} pixels must be integers in 0..{spec.levels - 1}; "
                       f"got values in [{x.min().item():g}, {x.max().item():g}]")
