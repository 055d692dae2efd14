"""Every trainer of the project, registered on import (``inference.training.registry.TRAINERS``).

A new trainer is one file that calls ``register_trainer`` plus its import line here.
"""
from inference.training import adversarial_trainer, svi_trainer  # noqa: F401  (register "adversarial", "svi")
from inference.training.registry import TRAINERS, TrainerSpec, register_trainer, trainer_spec

__all__ = ["TRAINERS", "TrainerSpec", "register_trainer", "trainer_spec"]
