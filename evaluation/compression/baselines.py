"""General-purpose lossless compressors on the same images, for scale: gzip, bz2, lzma (standard library) and PNG.

How each is counted (bytes of everything it writes, so that it is comparable with our file's size):

* ``gzip``, ``bz2``, ``lzma``: one stream of all N images' raw pixels, uint8 in (N, C, H, W) C order, at
  their strongest settings (gzip level 9 with mtime 0, bz2 level 9, xz preset 9 | extreme), container
  headers included. Binary data is also given to them with 8 pixels packed into a byte (``*_packed``),
  which is what a user would store.
* ``png_files``: one PNG file per image (Pillow, ``optimize=True``; 1-bit for binary data, 8-bit grey
  otherwise), the sum of their sizes, i.e. each image pays PNG's fixed signature and chunks (~70 bytes);
* ``png_mosaic``: all images stacked into one (N H) x W PNG, which pays them once.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma

import numpy as np
import torch
from PIL import Image  # Pillow, installed with torchvision


def _png_bytes(pixels: np.ndarray, binary: bool) -> int:
    """Size of one PNG of a 2-D uint8 array (levels 0/1 as a 1-bit image when ``binary``)."""
    image = Image.fromarray(pixels.astype(bool)) if binary else Image.fromarray(pixels)  # 2-D uint8: mode "L"
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.tell()


def baseline_sizes(x: torch.Tensor, levels: int) -> dict[str, int]:
    """Bytes each baseline needs for images x (N, C, H, W) on the data scale (module docstring)."""
    pixels = x.detach().to("cpu").round().to(torch.uint8).numpy()
    streams = {"": pixels.tobytes()}
    binary = levels == 2
    if binary:
        streams["_packed"] = np.packbits(pixels.reshape(-1)).tobytes()
    sizes: dict[str, int] = {}
    for suffix, raw in streams.items():
        sizes["gzip" + suffix] = len(gzip.compress(raw, compresslevel=9, mtime=0))
        sizes["bz2" + suffix] = len(bz2.compress(raw, 9))
        sizes["lzma" + suffix] = len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    if pixels.shape[1] == 1:  # grey images (PNG's colour modes would need another layout)
        sizes["png_files"] = sum(_png_bytes(image[0], binary) for image in pixels)
        sizes["png_mosaic"] = _png_bytes(pixels[:, 0].reshape(-1, pixels.shape[3]), binary)
    return sizes
