"""Optimisers and learning-rate schedules of the trainers (``--lr``, ``--adam-eps``, ``--lr-schedule``)."""
from __future__ import annotations

from typing import Any

import torch

from inference.training.config import TrainConfig
from models.protocols import RelativeLearningRates

#: Burda, Grosse & Salakhutdinov (2016): stage i = 0..7 lasts 3^i epochs at lr * 10^(-i/7); the stages
#: end after epochs 1, 4, 13, 40, 121, 364, 1093 (and 3280)
BURDA_MILESTONES = [sum(3 ** j for j in range(i + 1)) for i in range(7)]
BURDA_GAMMA = 10 ** (-1 / 7)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate schedule: constant, cosine to 0 at ``epochs``, exponential decay, or Burda's
    stages (lr * 10^(-i/7) for 3^i epochs)."""
    if config.lr_schedule == "burda":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=BURDA_MILESTONES, gamma=BURDA_GAMMA)
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def make_adam(params: Any, config: TrainConfig) -> torch.optim.Adam:
    """Adam with ``--lr`` and ``--adam-eps``; the fused kernel (one pass over all parameters: 4x faster
    than the per-tensor loop for a 425k-parameter VAE on one CPU thread) where this torch has it."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=config.lr, eps=config.adam_eps, fused=True)
    except (RuntimeError, TypeError):  # older torch, or a device without the fused kernel
        return torch.optim.Adam(params, lr=config.lr, eps=config.adam_eps)


def parameter_groups(model: Any, lr: float) -> list[dict[str, Any]]:
    """torch's parameter groups of ``model``: one at ``lr``, or the story's own groups at their multiples
    of ``lr`` (``models.protocols.RelativeLearningRates``); empty groups are dropped."""
    if not isinstance(model, RelativeLearningRates):
        return [{"params": list(model.parameters()), "lr": lr}]
    return [{"params": params, "lr": lr * scale} for params, scale in model.learning_rate_groups() if params]
