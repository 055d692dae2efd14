"""scikit-learn's ``load_digits`` (1797 images, 8x8, levels 0..16): the embedded default data set.

Splits: a fixed permutation ``numpy.random.default_rng(0).permutation(1797)``; the first 1297
indices are train, the next 250 val, the last 250 test.
"""
from __future__ import annotations

import numpy as np
import torch

SPLIT_SIZES = {"train": 1297, "val": 250, "test": 250}


def load(split: str, binarize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 8, 8) as floats (0..16, or {0, 1} with pixel >= 8 when binarized) and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.images))
    start = {"train": 0, "val": 1297, "test": 1547}[split]
    index = order[start:start + SPLIT_SIZES[split]]
    x = torch.from_numpy(bunch.images[index]).float().unsqueeze(1)
    if binarize:
        x = (x >= 8).float()
    return x, torch.from_numpy(bunch.target[index].astype(np.int64))
