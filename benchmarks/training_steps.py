"""Training steps timed alike: our ``Trainer``'s real step, and a hand-written step for plain PyTorch and peers.

Both run ``steps`` optimisation steps per call over the same batches: the rows of
``data.dataset.epoch_batches`` for an epoch counter that advances by one per call, gathered from a
tensor already on the device (nothing is loaded, copied to the device or converted in the timed
call). Both use the trainer's optimiser, ``inference.training.optimizers.make_adam``: fused Adam where this torch
has it, with ``TrainConfig``'s lr and eps, so differences are the step's own cost, not the optimiser's.

Ours is ``Trainer.train_epoch`` on a data set of exactly ``steps`` batches: per step the batch gather,
KL-weight update, ``objective.differentiable_loss`` through Pyro, the finiteness check, backward,
optimiser step and the float64 running total — all of the trainer's bookkeeping, no validation and no
checkpoints (those run once per epoch in real training and are not part of a step).
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from data.dataset import epoch_batches
from data.specs import DatasetSpec
from inference.training.config import TrainConfig
from inference.training.optimizers import make_adam
from inference.training.svi_trainer import SVITrainer


class InMemoryData:
    """What ``Trainer.train_epoch`` reads of a ``data.dataset.Dataset``: the spec and the training images
    (the same tensor every epoch, already on the device)."""

    def __init__(self, spec: DatasetSpec, x: torch.Tensor):
        self.spec = spec
        self.x = x

    def train_epoch(self, epoch: int, seed: int) -> torch.Tensor:
        return self.x

    def split(self, split: str) -> torch.Tensor:
        return self.x


def trainer_steps(model: Any, x_all: torch.Tensor, config: TrainConfig,
                  device: torch.device) -> tuple[Callable[[], None], Callable[[torch.Tensor], torch.Tensor]]:
    """(``run``: one ``Trainer.train_epoch`` = x_all.shape[0] / batch_size steps, ``loss(x)``: the per-example
    loss the trainer differentiates for batch x, the same call its step makes, without stepping)."""
    run_dir = Path(tempfile.mkdtemp(prefix="bench-peers-"))  # the trainer writes nothing in train_epoch
    trainer = SVITrainer(model, config, InMemoryData(model.spec, x_all), run_dir, "bench", device)
    epochs = itertools.count(1)

    def run() -> None:
        trainer.train_epoch(next(epochs))

    def loss(x: torch.Tensor) -> torch.Tensor:
        return trainer.pyro_loss(x) / x.shape[0]

    return run, loss


def plain_steps(loss: Callable[[torch.Tensor], torch.Tensor], parameters: Any, x_all: torch.Tensor,
                config: TrainConfig) -> Callable[[], None]:
    """One call = x_all.shape[0] / batch_size steps of ``loss`` (per-example mean) with the trainer's Adam."""
    optimizer = make_adam(parameters, config)
    epochs = itertools.count(1)

    def run() -> None:
        for index in epoch_batches(x_all.shape[0], config.batch_size, config.seed, next(epochs)):
            x = x_all[index.to(x_all.device)]
            value = loss(x)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()

    return run


def seeded(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, seed: int) -> Callable[[], torch.Tensor]:
    """``fn(x)`` after ``torch.manual_seed(seed)``, detached: a training loss checked on fixed noise."""

    def value() -> torch.Tensor:
        torch.manual_seed(seed)
        return fn(x).detach()

    return value
