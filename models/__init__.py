"""Generative models as Pyro model/guide pairs, and the registry that names them.

Importing this package registers every model family (each module calls ``register_model``).
"""
from models import vae  # noqa: F401  (registers "vae")
from models.base import GenerativeModel
from models.registry import MODELS, ModelSpec, model_spec, register_model

__all__ = ["MODELS", "GenerativeModel", "ModelSpec", "model_spec", "register_model"]
