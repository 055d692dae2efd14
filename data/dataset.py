"""A named data set: its spec, its splits as tensors, and the training data of a given epoch."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from core.errors import DGMError
from data import binarized_mnist, digits, idx_mnist
from data.files import MissingDataFile, data_dir
from data.specs import DATASETS, SPLITS, DatasetSpec


class Dataset:
    """Splits of one data set, loaded lazily and kept in memory as float tensors (N, C, H, W).

    ``dynamic_binarized_mnist`` draws a fresh binarization of the training images every epoch from
    a generator seeded by (seed, epoch), so a resumed run sees exactly the data an uninterrupted
    run would have seen; its val and test splits are binarized once with seed 0.
    """

    def __init__(self, name: str, directory: str | Path | None = None):
        if name not in DATASETS:
            raise DGMError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
        self.spec: DatasetSpec = DATASETS[name]
        self.directory = data_dir(directory)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._fixed: dict[str, torch.Tensor] = {}  # the once-binarized splits of the dynamic data set

    @property
    def name(self) -> str:
        return self.spec.name

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if split not in SPLITS:
            raise DGMError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if split not in self._cache:
            name = self.spec.name
            if name in ("digits", "binarized_digits"):
                self._cache[split] = digits.load(split, binarize=name == "binarized_digits")
            elif name == "binarized_mnist":
                self._cache[split] = (binarized_mnist.load(split, self.directory), None)
            elif name in ("mnist", "fashion_mnist"):
                self._cache[split] = idx_mnist.load(name, split, self.directory)
            else:  # dynamic_binarized_mnist: grey levels kept; binarized on access
                self._cache[split] = idx_mnist.load("mnist", split, self.directory)
        return self._cache[split]

    def require(self, splits: tuple[str, ...] = SPLITS) -> None:
        """Load ``splits`` now (before any work): one error naming every missing file at once."""
        missing = []
        for split in splits:
            try:
                self._load(split)
            except MissingDataFile as exc:
                missing.append(exc)
        if missing:
            raise MissingDataFile.combined(missing)

    def split(self, split: str) -> torch.Tensor:
        """The images of ``split`` ("train", "val" or "test") on the data scale."""
        x, _ = self._load(split)
        if self.spec.name == "dynamic_binarized_mnist":
            # binarized once (seed 0) and kept: the trainer asks for the validation split every epoch
            if split not in self._fixed:
                self._fixed[split] = binarize(x, 0)
            return self._fixed[split]
        return x

    def labels(self, split: str) -> torch.Tensor | None:
        """Class labels of ``split`` where the data set has them (not static binarized MNIST)."""
        return self._load(split)[1]

    def train_epoch(self, epoch: int, seed: int) -> torch.Tensor:
        """The training images used in ``epoch`` (re-binarized each epoch for the dynamic data set)."""
        x, _ = self._load("train")
        if self.spec.name == "dynamic_binarized_mnist":
            return binarize(x, seed * 100003 + epoch)
        return x


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Indices of the global batches of ``epoch``: a permutation of 0..n-1 seeded by (seed, epoch), cut into
    batches of ``batch_size`` (the last one shorter). Every process of a distributed run draws the same
    permutation and takes its own slice of each batch, so a step sees the same examples whatever the
    number of processes; a resumed run sees the batches an uninterrupted one would have seen."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))
    return list(order.split(batch_size))


def binarize(grey: torch.Tensor, seed: int) -> torch.Tensor:
    """Bernoulli(k / 255) binarization of 8-bit images (grey levels k = 0..255, any shape, float): pixel = 1
    where u < k, u uniform on {0, ..., 254}, so P(pixel = 1) = k / 255 exactly.

    The draws are numpy's PCG64 bounded bytes, seeded by ``seed``: one byte a pixel, 0.4-0.5 s for the 50,000
    training images against 1.1-1.3 s for ``torch.bernoulli`` (a double from mt19937 a pixel), measured on one
    AMD EPYC core beside a training run; it is redrawn every epoch of a run on this data set."""
    u = np.random.default_rng(seed).integers(0, 255, size=tuple(grey.shape), dtype=np.uint8)
    return (torch.from_numpy(u).to(grey.device) < grey).to(grey.dtype)


@lru_cache(maxsize=8)
def _cached(name: str, directory: str | None) -> Dataset:
    return Dataset(name, directory)


def load_dataset(name: str, directory: str | Path | None = None) -> Dataset:
    """The data set called ``name`` (see ``data.specs.DATASETS``); cached per process."""
    return _cached(name, str(directory) if directory else None)
