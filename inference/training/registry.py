"""The registry of trainers: name -> trainer class. A model family names its trainer in its
``ModelSpec`` (``trainer="svi"`` by default); ``python -m inference.train`` looks the class up here and
runs every trainer through the same orchestration (options, run directory, resume, figures, final
evaluation). A trainer class provides:

* ``cls(model, config, dataset, run_dir, model_name, device, dist, judge)``;
* ``check_options(config, model)`` (classmethod): one-line refusals before anything is written;
* ``describe()``: the start-up line; ``resume()``; ``fit(on_epoch_end)`` (from ``EpochLoop``);
* ``figures``: an object with ``samples(epoch)``, ``on_epoch_end(epoch, row)``, ``final(epoch, images)``;
* ``final_evaluation(best_run)``: what is measured on the test split after training.

A new trainer is one file that defines the class and calls :func:`register_trainer`.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import DGMError


@dataclass(frozen=True)
class TrainerSpec:
    name: str
    cls: type
    description: str


TRAINERS: dict[str, TrainerSpec] = {}


def register_trainer(name: str, cls: type, description: str = "") -> None:
    """Make ``cls`` the trainer called ``name``."""
    if name in TRAINERS:
        raise ValueError(f"trainer {name!r} registered twice")
    TRAINERS[name] = TrainerSpec(name, cls, description or (cls.__doc__ or "").strip().splitlines()[0])


def trainer_spec(name: str) -> TrainerSpec:
    """The trainer called ``name`` (a one-line error naming the choices otherwise)."""
    if name not in TRAINERS:
        raise DGMError(f"unknown trainer {name!r}; choose one of {', '.join(sorted(TRAINERS))}")
    return TRAINERS[name]
