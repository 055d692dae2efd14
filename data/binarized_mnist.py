"""Static binarized MNIST (Larochelle & Murray 2011): 50,000 / 10,000 / 10,000 images of 784 bits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.errors import DGMError
from data.files import obtain

URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
FILE_SPLIT = {"train": "train", "val": "valid", "test": "test"}
# MD5 of the decompressed .amat text (identical for the .amat and .amat.gz copies).
MD5 = {
    "train": "db28b1a6ae0fe70cbd3da91acf46e477",
    "valid": "bf37822a04e94123630de6a7dfd9c9ef",
    "test": "14e41ae11040adba6ab8cb291eda0dd8",
}
PIXELS = 784


def parse_amat(content: bytes, source: str) -> np.ndarray:
    """Parse ``.amat`` text (one image a line, 784 space-separated 0/1) into a uint8 (N, 784) array.

    Each value is one character followed by one separator, so the digits sit at every even byte;
    this is ~100x faster than ``np.loadtxt`` and is checked against the layout.
    """
    data = np.frombuffer(content, dtype=np.uint8)
    row_bytes = 2 * PIXELS
    if data.size % row_bytes:
        raise DGMError(f"{source}: unexpected size {data.size} bytes for rows of {PIXELS} binary values")
    rows = data.reshape(-1, row_bytes)
    digits, separators = rows[:, 0::2], rows[:, 1::2]
    if not (np.isin(digits, (ord("0"), ord("1"))).all() and (separators[:, :-1] == ord(" ")).all()
            and (separators[:, -1] == ord("\n")).all()):
        raise DGMError(f"{source}: not a binarized MNIST .amat file (values other than 0/1)")
    return (digits - ord("0")).astype(np.uint8)


def load(split: str, folder: Path) -> torch.Tensor:
    """The split as a float tensor (N, 1, 28, 28) of {0, 1}."""
    name = FILE_SPLIT[split]
    base = f"binarized_mnist_{name}.amat"
    content = obtain(folder / "BinarizedMNIST", [base + ".gz", base], URL.format(split=name), MD5[name],
                     "binarized_mnist")
    pixels = parse_amat(content, base)
    return torch.from_numpy(pixels).float().view(-1, 1, 28, 28)
