"""The registry of trainable models: name -> config dataclass, builder, the name of its trainer.

A model module registers itself with :func:`register_model`; ``python -m inference.train NAME``,
``load_run`` and the generic tests all read this registry, so a registered model is reachable
from the command line and tested the moment it is registered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from core.errors import DGMError
from data.specs import DatasetSpec


@dataclass(frozen=True)
class ModelSpec:
    """How to build and train one family of models."""

    name: str
    config_cls: type
    build: Callable[[object, DatasetSpec], object]
    #: the name of its trainer in inference.training.registry (svi: any Pyro model/guide pair)
    trainer: str
    description: str
    #: TrainConfig defaults this family needs (e.g. the GAN's lr 2e-4); the command line still wins
    train_defaults: dict[str, Any] = field(default_factory=dict)
    #: small options (of ``config_cls``) that the generic tests and examples build the family with
    example_options: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, config_cls: type, trainer: str = "svi", description: str = "",
                   train_defaults: dict[str, Any] | None = None,
                   example_options: dict[str, Any] | None = None) -> Callable:
    """Decorator for ``build(config, dataset_spec) -> GenerativeModel`` functions: registers the family
    ``name`` (``python -m inference.train NAME``, ``load_run`` and the generic tests read this registry)."""

    def decorate(build: Callable) -> Callable:
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = ModelSpec(name, config_cls, build, trainer, description or (build.__doc__ or "").strip(),
                                 dict(train_defaults or {}), dict(example_options or {}))
        return build

    return decorate


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise DGMError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name]
