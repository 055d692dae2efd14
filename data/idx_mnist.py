"""MNIST and Fashion-MNIST from the original IDX files, in the layout torchvision uses.

Files are looked for in ``DIR/MNIST/raw`` (or ``DIR/FashionMNIST/raw``), gzipped or not, and
downloaded from torchvision's own mirror list when missing. Splits follow the conventions: train
is the first 50,000 of the official training set, val its last 10,000, test the official test set.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.errors import DGMError
from data.files import obtain

# MD5 of the decompressed IDX files.
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
TRAIN_SIZE = 50000


def _mirror(dataset: str) -> str:
    """The first download mirror torchvision lists for the data set."""
    import torchvision.datasets as tvd

    cls = tvd.MNIST if dataset == "mnist" else tvd.FashionMNIST
    return cls.mirrors[0]


def parse_idx(content: bytes, source: str) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic 0x0000 08 NDIM, then NDIM sizes) to uint8."""
    if len(content) < 4 or content[:3] != b"\x00\x00\x08":
        raise DGMError(f"{source}: not an IDX file of unsigned bytes")
    ndim = content[3]
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    array = np.frombuffer(content, dtype=np.uint8, offset=offset)
    if array.size != int(np.prod(shape)):
        raise DGMError(f"{source}: header says {shape} but holds {array.size} values")
    return array.reshape(shape)


def read(dataset: str, stem: str, folder: Path) -> np.ndarray:
    raw = folder / FOLDER[dataset] / "raw"
    content = obtain(raw, [stem + ".gz", stem], _mirror_url(dataset, stem), MD5[dataset][stem], dataset)
    return parse_idx(content, stem)


def _mirror_url(dataset: str, stem: str) -> str:
    try:
        return _mirror(dataset) + stem + ".gz"
    except Exception:  # torchvision missing: the message still names the file
        return stem + ".gz"


def load(dataset: str, split: str, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) as floats 0..255 and labels (N,) for a split."""
    prefix = "t10k" if split == "test" else "train"
    images = read(dataset, f"{prefix}-images-idx3-ubyte", folder)
    labels = read(dataset, f"{prefix}-labels-idx1-ubyte", folder)
    if split == "train":
        images, labels = images[:TRAIN_SIZE], labels[:TRAIN_SIZE]
    elif split == "val":
        images, labels = images[TRAIN_SIZE:], labels[TRAIN_SIZE:]
    x = torch.from_numpy(images.copy()).float().unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))
