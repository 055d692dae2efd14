"""Data sets held in memory: a user's own tensors (or a slice of a named data set) as a ``Dataset``.

``InMemoryDataset(spec, train, val, test)`` has what trainers and evaluation read of
``data.dataset.Dataset`` (``name``, ``spec``, ``directory``, ``split``, ``labels``, ``train_epoch``).
``image_spec(shape, levels)`` describes images of any shape (C, H, W) with ``levels`` integer levels,
so a small model (a 3x3 binary image, say) needs no hand-made internal objects.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.errors import DGMError
from data.specs import SPLITS, DatasetSpec


def image_spec(shape: tuple[int, ...], levels: int, name: str = "custom",
               splits: tuple[int, int, int] = (0, 0, 0)) -> DatasetSpec:
    """The spec of images (C, H, W) (or (H, W), one channel) with integer levels 0..levels-1."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise DGMError(f"image shape must be (C, H, W) or (H, W) of positive sizes, got {shape}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise DGMError(f"levels must be an integer of at least 2 (2 for binary data), got {levels!r}")
    return DatasetSpec(name, shape, levels, splits, f"in-memory images {shape}, {levels} levels")  # type: ignore[arg-type]


class InMemoryDataset:
    """Splits given as float tensors (N, C, H, W) of integer levels; checked against the spec once."""

    def __init__(self, spec: DatasetSpec, train: torch.Tensor, val: torch.Tensor | None = None,
                 test: torch.Tensor | None = None):
        given = {"train": train, "val": val, "test": test}
        self._splits = {k: self._checked(k, v, spec) for k, v in given.items() if v is not None}
        sizes = tuple(self._splits[k].shape[0] if k in self._splits else 0 for k in SPLITS)
        self.spec = DatasetSpec(spec.name, spec.shape, spec.levels, sizes, spec.description)  # type: ignore[arg-type]
        self.directory: Path | None = None

    @staticmethod
    def _checked(split: str, x: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise DGMError(f"the {split} split must be a tensor, got {type(x).__name__}")
        x = x if x.is_floating_point() else x.float()
        if x.dim() == 3 and spec.shape[0] == 1:
            x = x.unsqueeze(1)
        if tuple(x.shape[1:]) != spec.shape:
            raise DGMError(f"the {split} split has images of shape {tuple(x.shape[1:])}, the spec says {spec.shape}")
        if x.numel() and (x.min() < 0 or x.max() > spec.levels - 1 or not torch.equal(x, x.round())):
            raise DGMError(f"the {split} split must hold integer levels 0..{spec.levels - 1}")
        return x

    @property
    def name(self) -> str:
        return self.spec.name

    def split(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise DGMError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if split not in self._splits:
            raise DGMError(f"this in-memory data set has no {split} split")
        return self._splits[split]

    def labels(self, split: str) -> torch.Tensor | None:
        return None

    def train_epoch(self, epoch: int, seed: int) -> torch.Tensor:
        return self.split("train")
