"""Helpers shared by the compression tests: tiny models from the registry and tiny trained runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models  # noqa: F401  (fills the registry)
from core.config import build_config
from core.errors import run_cli
from data.specs import DATASETS
from inference.train import main as train_main
from models.registry import model_spec

#: small networks of every coded family: (registry name, data set, options)
TINY: dict[str, tuple[str, str, dict]] = {
    "pixelcnn_bernoulli": ("pixelcnn", "binarized_digits", dict(channels=8, residual_blocks=1, output_channels=8)),
    "gated_logistic_mixture": ("gated_pixelcnn", "digits",
                               dict(channels=8, layers=2, output_channels=8, likelihood="logistic_mixture",
                                    mixture_components=3)),
    "causal_categorical": ("causal_conv1d", "digits", dict(channels=8, layers=3, output_channels=8,
                                                            likelihood="categorical")),
    "vae_bernoulli": ("vae", "binarized_digits", dict(hidden=(16,), latent_dim=3)),
    "vae_categorical": ("vae", "digits", dict(hidden=(16,), latent_dim=3, likelihood="categorical")),
    "vae_logistic_mixture": ("vae", "digits", dict(hidden=(16,), latent_dim=3, likelihood="logistic_mixture",
                                                   mixture_components=2)),
    "vae_conv": ("vae", "binarized_digits", dict(hidden=(8,), latent_dim=2, arch="conv")),
}


def tiny(key: str, seed: int = 0) -> torch.nn.Module:
    """The randomly initialised float32 model TINY[key], in eval mode."""
    name, dataset, options = TINY[key]
    torch.manual_seed(seed)
    registered = model_spec(name)
    return registered.build(build_config(registered.config_cls, options), DATASETS[dataset]).eval()


def train_run(out: Path, *options: str) -> Path:
    """Train a run through the real command line (options include the model name and --dataset)."""
    with pytest.raises(SystemExit) as info:
        run_cli(train_main, [*options, "--device", "cpu", "--out", str(out)])
    assert info.value.code == 0
    return out
