"""What each named data set is: shape, number of levels, splits. The names every command uses."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """A data set as the models see it.

    Images are float tensors of shape ``(N, C, H, W)`` holding integer levels ``0 .. levels-1``
    (``{0, 1}`` for binary data); ``dim`` is D = C*H*W, used by bits/dim = NLL / (D ln 2). An in-memory
    data set of a user's own program (``data.in_memory.tensor_spec``) may have any event ``shape`` and
    ``levels=None`` for real-valued data.
    """

    name: str
    shape: tuple[int, ...]
    levels: int | None
    splits: tuple[int, int, int]
    description: str

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def binary(self) -> bool:
        return self.levels == 2


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("digits", (1, 8, 8), 17, (1297, 250, 250), "scikit-learn load_digits, 8x8, 17 levels (default)"),
        DatasetSpec("binarized_digits", (1, 8, 8), 2, (1297, 250, 250), "load_digits with pixel >= 8 -> 1"),
        DatasetSpec("binarized_mnist", (1, 28, 28), 2, (50000, 10000, 10000), "static binarized MNIST (Larochelle)"),
        DatasetSpec("dynamic_binarized_mnist", (1, 28, 28), 2, (50000, 10000, 10000),
                    "MNIST re-binarized each epoch, Bernoulli(pixel/255)"),
        DatasetSpec("mnist", (1, 28, 28), 256, (50000, 10000, 10000), "8-bit MNIST"),
        DatasetSpec("fashion_mnist", (1, 28, 28), 256, (50000, 10000, 10000), "8-bit Fashion-MNIST"),
    )
}

SPLITS = ("train", "val", "test")
