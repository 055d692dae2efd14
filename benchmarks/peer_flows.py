"""The flow rows of the peer table: MAF and RealNVP training steps, RealNVP log-density and sampling.

Ours is ``models.flows.density.FlowDensity`` (``--arch maf`` or ``realnvp_mlp``) of 8-bit images with
uniform dequantization and the logit pre-processing: the training step is ``Trainer.train_epoch`` (loss
-log p(x + u) per example, u ~ U[0, 1)^D drawn by the guide), the log-density ``FlowDensity.log_density``
of dequantized images, and sampling ``FlowDensity.sample`` (images, floored). The peers
(``benchmarks.peer_flow_models``: same architecture, our weights) do the same work with the same data
side in torch: u = ``torch.rand_like(x)`` (the same draw as Pyro's uniform guide on the same seed), the
logit, the flow's log-probability plus the Jacobians, the trainer's Adam; their samples go through the
inverse logit and are floored. Checks: the training loss on the same batch and noise, the log-density of
the same images, the continuous samples from the same base noise, each with our log-scale map swapped
into the peer (``PeerFlow.ours_maps``) and compared with ours.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable

import torch

from benchmarks.peer_flow_models import BUILDERS, PeerFlow, dequantized_logit, logit_to_images
from benchmarks.side_by_side import Contender
from benchmarks.training_steps import plain_steps, seeded, trainer_steps
from data.specs import DatasetSpec
from inference.training.config import TrainConfig
from models.flows.density import FlowConfig, FlowDensity

CHECK_SEED = 123
FLOW_PEERS = ("zuko", "nflows", "normflows")


def new_flow(spec: DatasetSpec, arch: str, layers: int, hidden: tuple[int, ...], device: torch.device) -> FlowDensity:
    """Our flow density, initialised from seed 0; couplings with ``halves`` masks (what normflows can split)."""
    torch.manual_seed(0)
    return FlowDensity(FlowConfig(arch=arch, num_layers=layers, hidden=hidden, mask="halves"), spec).to(device)


def randomized(model: FlowDensity, scale: float = 0.02) -> FlowDensity:
    """Every parameter perturbed by N(0, scale^2) (seed 1): zero-initialised last layers would make every
    flow the identity and the checks blind to the networks; a trained flow is not at zero."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen).to(p))
    return model


def peer_copies(model: FlowDensity, peers: dict[str, ModuleType]) -> tuple[list[PeerFlow], list[str]]:
    """Each installed flow peer rebuilt from ``model``'s weights; (built, 'name: reason' of those that failed)."""
    built, failed = [], []
    for name in FLOW_PEERS:
        if name not in peers:
            continue
        try:
            built.append(BUILDERS[name](peers[name], model))
        except Exception as exc:  # e.g. an architecture the peer cannot express: reported, not fatal
            failed.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    return built, failed


def peer_loss(peer: PeerFlow, levels: int, alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """-log p(x + u) per example, u ~ U[0, 1)^D, through the peer's flow and the logit data side."""

    def loss(x: torch.Tensor) -> torch.Tensor:
        y = (x + torch.rand_like(x)).flatten(1)
        w, log_jacobian = dequantized_logit(y, levels, alpha)
        return -(peer.log_prob(w) + log_jacobian).mean()

    return loss


def checked(peer: PeerFlow, fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """``fn()`` with our log-scale map swapped into the peer (the check's value)."""

    def value() -> torch.Tensor:
        with peer.ours_maps():
            return fn()

    return value


def flow_step(spec: DatasetSpec, arch: str, layers: int, hidden: tuple[int, ...], x_all: torch.Tensor,
              config: TrainConfig, peers: dict[str, ModuleType], device: torch.device) -> tuple[list[Contender], list[str]]:
    """Contenders for a training step of the flow over ``x_all`` (one call = x_all.shape[0] / B steps)."""
    ours = randomized(new_flow(spec, arch, layers, hidden, device))
    built, failed = peer_copies(ours, peers)
    steps = x_all.shape[0] // config.batch_size
    check_x = x_all[:config.batch_size]
    run, loss = trainer_steps(ours, x_all, config, device)
    contenders = [Contender("ours", run, seeded(loss, check_x, CHECK_SEED), ours, steps, "Trainer.train_epoch")]
    alpha = ours.config.logit_alpha
    for peer in built:
        fn = peer_loss(peer, spec.levels, alpha)
        contenders.append(Contender(peer.name, plain_steps(fn, peer.module.parameters(), x_all, config),
                                    checked(peer, seeded(fn, check_x, CHECK_SEED)), peer.module, steps,
                                    "our weights and masks; our log-scale map swapped in for the check"))
    return contenders, failed


def seeded_call(fn: Callable[[], torch.Tensor], seed: int) -> Callable[[], torch.Tensor]:
    def value() -> torch.Tensor:
        torch.manual_seed(seed)
        return fn()

    return value


def flow_evaluation(spec: DatasetSpec, layers: int, hidden: tuple[int, ...], y: torch.Tensor,
                    peers: dict[str, ModuleType], device: torch.device) -> tuple[list[Contender], list[Contender], list[str]]:
    """(log-density contenders, sampling contenders, failures) for RealNVP on dequantized images y (N, C, H, W):
    log p(y) of the N images, and N samples (the same batch size)."""
    ours = randomized(new_flow(spec, "realnvp_mlp", layers, hidden, device)).eval()
    built, failed = peer_copies(ours, peers)
    n, alpha, levels = y.shape[0], ours.config.logit_alpha, spec.levels
    flat = y.flatten(1)

    @torch.no_grad()
    def ours_density() -> torch.Tensor:
        return ours.log_density(y)

    @torch.no_grad()
    def ours_samples() -> torch.Tensor:  # continuous, for the check (``sample`` floors them)
        return ours.from_event(ours.distribution().sample((n,))).flatten(1)

    density = [Contender("ours", ours_density, ours_density, ours, matched="FlowDensity.log_density")]
    sampling = [Contender("ours", lambda: ours.sample(n), seeded_call(ours_samples, CHECK_SEED), ours,
                          matched="FlowDensity.sample")]
    for peer in built:
        @torch.no_grad()
        def log_density(peer: PeerFlow = peer) -> torch.Tensor:
            w, log_jacobian = dequantized_logit(flat, levels, alpha)
            return peer.log_prob(w) + log_jacobian

        @torch.no_grad()
        def samples(peer: PeerFlow = peer) -> torch.Tensor:
            return logit_to_images(peer.sample(n), levels, alpha)

        @torch.no_grad()
        def images(samples: Callable[[], torch.Tensor] = samples) -> torch.Tensor:
            return samples().floor().clamp(0, levels - 1)

        matched = "our weights and masks; our log-scale map swapped in for the check"
        density.append(Contender(peer.name, log_density, checked(peer, log_density), peer.module, matched=matched))
        sampling.append(Contender(peer.name, images, checked(peer, seeded_call(samples, CHECK_SEED)), peer.module,
                                  matched=matched))
    return density, sampling, failed
