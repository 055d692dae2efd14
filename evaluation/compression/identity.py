"""The identity of a trained model: what a compressed file must be decoded with.

    identity = SHA-256( canonical JSON of {model, dataset, model_options, train options}
                        || for each state-dict entry in key order: key, dtype, shape, raw bytes )

The train options are those that cannot change on ``--resume`` (``TrainConfig`` fields not marked
``resumable``): a run moved to another data directory or device keeps its identity, while any other
model, data set, option or weight, down to one bit, gives another. A decoder with another identity
would compute other probabilities and decode garbage, so the file refuses it by this hash first.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from typing import Any

import torch

from inference.training.config import TrainConfig

#: TrainConfig options that may change on --resume without making another model
_RESUMABLE = frozenset(f.name for f in fields(TrainConfig) if f.metadata.get("resumable"))


def config_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a ``config.json`` dict that define the model (see the module docstring)."""
    train = {k: v for k, v in config.get("train", {}).items() if k not in _RESUMABLE}
    return {"model": config.get("model"), "dataset": config.get("dataset"),
            "model_options": config.get("model_options", {}), "train": train}


def model_identity(config: dict[str, Any], model: torch.nn.Module) -> str:
    """SHA-256 (hex) of the model's defining config and every tensor of its state dict."""
    digest = hashlib.sha256()
    digest.update(json.dumps(config_identity(config), sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}|".encode("utf-8"))
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
