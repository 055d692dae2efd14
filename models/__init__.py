"""Generative models as Pyro model/guide pairs, and the registry that names them.

Importing this package registers every model family (each module calls ``register_model``).
"""
import core  # noqa: F401  (first: core.progress imports tqdm.auto quietly, before Pyro does)
from models import vae  # noqa: F401  (registers "vae")
from models import arm  # noqa: F401  (registers "causal_conv1d", "pixelcnn", "gated_pixelcnn")
from models import ppca  # noqa: F401  (registers "ppca")
from models import gan  # noqa: F401  (registers "gan")
from models.flows import density  # noqa: F401  (registers "flow")
from models.base import GenerativeModel
from models.registry import MODELS, ModelSpec, model_spec, register_model

__all__ = ["MODELS", "GenerativeModel", "ModelSpec", "model_spec", "register_model"]
