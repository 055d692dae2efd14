"""The interface every generative model of the project implements.

A model is a ``torch.nn.Module`` (its parameters live in the module, so ``state_dict`` is the whole
trainable state) with a Pyro generative story ``model(x)`` and a guide ``guide(x)``. Every
per-example site sits inside ``pyro.plate("data", N)``; models with no latent site have an empty
guide and are trained by exact maximum likelihood through the same SVI loss.
"""
from __future__ import annotations

import torch
from torch import nn

from core.errors import DGMError
from data.specs import DatasetSpec


class GenerativeModel(nn.Module):
    """A :class:`models.protocols.Story` as a ``torch.nn.Module`` over images (N, C, H, W) on the data scale.

    The parameters live in the module, so ``state_dict`` is the whole trainable state. Only what every
    story has is here; optional capabilities (a training objective, an exact marginal, validation
    statistics, figures) are the protocols of ``models.protocols``, implemented by the stories that
    have them.
    """

    #: plate dimensions the story uses (the data plate), as Pyro's ``max_plate_nesting``
    max_plate_nesting: int = 1
    #: whether the story has latent sample sites (False for flows and ARMs)
    has_latents: bool = True
    #: what ``sample(n, mean=True)`` shows, for figure titles ("vae (run R): decoder means E[x | z] ...")
    mean_label: str = "means E[x | z]"

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
