"""What a generative story is, and the optional capabilities some stories have, as small protocols.

Every story (:class:`Story`) is a Pyro ``model(x)`` / ``guide(x)`` pair over images ``x`` of shape
(N, C, H, W) on the data scale, with every per-example site inside ``pyro.plate("data", N)``; it can
``sample`` images and refuse data outside its support (``check_data``). ``max_plate_nesting`` is the
number of plate dimensions the story uses, as Pyro's ELBOs take it (particles and importance samples
go one dimension further left); ``has_latents`` is False for stories with no latent sample site
(flows, ARMs), whose likelihood is exact.

Optional capabilities, each its own protocol, tested with ``isinstance`` (they are
``runtime_checkable``) rather than probed attribute by attribute:

* :class:`ChecksData`, :class:`PlateNesting`: the two things the log p(x) estimators use of an object
  whose bound method they are given as ``model`` (its support check; its plate depth, as Pyro's ELBOs
  take ``max_plate_nesting``); every :class:`Story` has both, a user's own object may have either.
* :class:`ExactMarginal`: ``log_marginal(x)`` in closed form (PPCA). ``has_log_marginal`` says whether it
  applies to the story's data set (PPCA of dequantized images has none).
* :class:`ClosedFormFit`: the maximum of the training objective in closed form (PPCA with ``--fit
  closed_form``); ``fits_in_closed_form`` says whether the story's options ask for it.
* :class:`DiscreteLikelihood`: ``discrete_likelihood`` False where the story's log p(x) is a density of
  continuous values rather than a probability of the discrete data (PPCA of bin centres): its bits/dim
  are not ranked with the others. Stories without it are of the discrete data.
* :class:`RequestsObjective`: ``training_objective()`` names what the story wants to be trained with
  (:class:`ObjectiveRequest`: a name from ``inference.objectives.registry``, particles, KL warm-up) as
  plain data: a story knows nothing of how the objective is computed.
* :class:`RelativeLearningRates`: parameter groups that learn at a multiple of the trainer's rate (a
  VAE's flow prior).
* :class:`DirectELBO`: the one-sample ELBO's recon and KL computed from the story's own distributions
  without a Pyro trace (the training step's speed path; checked against the Pyro program).
* :class:`ValidationStatistics`: extra per-epoch statistics (the VAE's active units).
* :class:`FinalFigures`: figures of the trained story (the 2-D manifold, flow temperatures), drawn with
  ``core.plots`` from the story's own tensors and the first test images the trainer passes in.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from data.specs import DatasetSpec

#: the name of the plate that holds one example's sites (``shared/CONVENTIONS.md``)
DATA_PLATE = "data"


@runtime_checkable
class Story(Protocol):
    """A Pyro model/guide pair over images, with sampling and a support check."""

    spec: DatasetSpec
    max_plate_nesting: int
    has_latents: bool

    def model(self, x: torch.Tensor) -> None: ...

    def guide(self, x: torch.Tensor) -> None: ...

    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor: ...

    def check_data(self, x: torch.Tensor) -> None: ...


@runtime_checkable
class ChecksData(Protocol):
    def check_data(self, x: torch.Tensor) -> None:
        """Refuse data outside the support with a one-line ``DGMError``."""
        ...


@runtime_checkable
class PlateNesting(Protocol):
    """How many plate dimensions the program uses (Pyro's ``max_plate_nesting``)."""

    max_plate_nesting: int


@runtime_checkable
class ExactMarginal(Protocol):
    """log p(x) per example in closed form, nats, shape (N,)."""

    @property
    def has_log_marginal(self) -> bool: ...

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ClosedFormFit(Protocol):
    @property
    def fits_in_closed_form(self) -> bool: ...

    def fit_closed_form(self, x: torch.Tensor) -> float:
        """Set the parameters to the maximiser of the mean training objective on ``x`` (N, ...) and return
        that maximum (nats per example)."""
        ...


@runtime_checkable
class DiscreteLikelihood(Protocol):
    @property
    def discrete_likelihood(self) -> bool: ...


@dataclass(frozen=True)
class ObjectiveRequest:
    """The training objective a story asks for, by name (``inference.objectives.registry.OBJECTIVES``).

    ``num_particles``: samples per example (K of the IWAE bound); ``kl_warmup_epochs``: the KL weight
    rises linearly from 0 to 1 over this many (fractional) epochs (ELBO only; 0: no warm-up)."""

    name: str = "elbo"
    num_particles: int = 1
    kl_warmup_epochs: float = 0.0


@runtime_checkable
class RequestsObjective(Protocol):
    def training_objective(self) -> ObjectiveRequest: ...


@runtime_checkable
class RelativeLearningRates(Protocol):
    def learning_rate_groups(self) -> list[tuple[list[torch.nn.Parameter], float]]:
        """The story's parameters in groups, each with a multiplier of the trainer's learning rate (every
        parameter in one group; a VAE's flow prior learns slower than its networks)."""
        ...


@runtime_checkable
class DirectELBO(Protocol):
    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The one-sample ELBO's parts per example without Pyro's trace machinery, or None where the story
        cannot give them: (recon = log p(x | z), kl = KL(q(z | x) || p(z)), closed form where both are
        diagonal Gaussians, else log q(z | x) - log p(z)), each of shape (N,), for one reparameterised z
        drawn with the noise the guide draws, in the same order. The training objective checks it against
        the Pyro program on the same noise before relying on it (a speed path, never a second definition)."""
        ...


@runtime_checkable
class ValidationStatistics(Protocol):
    def validation_extras(self, x: torch.Tensor) -> dict[str, float]:
        """Statistics of validation data ``x`` for ``metrics.csv`` (names without the ``val_`` prefix)."""
        ...


@runtime_checkable
class FinalFigures(Protocol):
    def final_figures(self, run_dir: Path, test_images: torch.Tensor | None, label: str) -> None:
        """Write the story's own figures into ``run_dir`` (``test_images``: the first test images, or None),
        their titles starting with ``label`` (the model and its run: ``core.plots.run_label``)."""
        ...
