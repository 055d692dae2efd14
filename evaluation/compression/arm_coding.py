"""ANS coding with an autoregressive model: p(x) = prod_i p(x_i | x_<i), each pixel coded under its conditional.

Decoding must run the model pixel by pixel (x_i's conditional needs x_<i), so it uses the cached sampler's
path (``model.incremental``, Ramachandran et al. 2017) with the decoded value observed in place of a drawn
one. Encoding runs **the same path** with the true value observed (teacher forcing through the cache),
not the one-pass ``forward``: a full forward pass and the cached pass compute the same conditionals only
up to float32 rounding, and a single differing probability would decode a wrong pixel. With one code path
the tables agree bit for bit (``_raster_pass`` is shared by both directions).

Layout on the ANS stack (one stack for the whole file):

* images are coded in batches of B (all B images' pixel i in one network pass; the batch size is in the
  header, because the batch is part of the computation that must be repeated);
* within a batch the decode order is pixel-major (pixel 0 of every image, pixel 1, ...); ANS is a stack,
  so the encoder first computes every table of the batch (float64 rows of L levels, (D, B, L)), then
  pushes the symbols in reverse;
* batches are pushed last batch first, so the decoder pops batch 0 first.

Code length: sum_i -log2 q(x_i | x_<i) for the quantised q (``tables``), i.e. the exact NLL of the coded
conditionals plus at most -log2(1 - L 2^-24) bits a pixel, plus the ANS state (at most two words, and the
stack's start-up from an empty state can save up to one word). Bits/dim of the file are therefore the
model's exact NLL in bits/dim up to that and the header.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import constriction
import numpy as np
import torch

from core.errors import DGMError
from evaluation.compression.tables import categorical_family, ideal_bits, level_probabilities, symbols_of
from models.arm.autoregressive import AutoregressiveModel

Progress = Callable[[int], None]


@dataclass
class ARMCodeStats:
    """What encoding measured: the ideal code length of every image under the coded conditionals."""

    ideal_bits: np.ndarray  # (N,) -sum_i log2 p(x_i | x_<i) in float64, bits

    @property
    def nll_nats(self) -> np.ndarray:
        return self.ideal_bits * np.log(2.0)


def batches(count: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of at most ``batch_size`` images, in decode order."""
    if batch_size < 1:
        raise DGMError(f"--batch-size must be at least 1, got {batch_size}")
    return [(start, min(count, start + batch_size)) for start in range(0, count, batch_size)]


@torch.no_grad()
def _raster_pass(model: AutoregressiveModel, count: int,
                 code_pixel: Callable[[int, np.ndarray], np.ndarray]) -> torch.Tensor:
    """Run the cached network over ``count`` images in raster order.

    For each pixel i, ``code_pixel(i, table)`` receives the float64 rows p(x_i = k | x_<i) (count, L) and
    returns the pixel's symbols (count,) int32 (known when encoding, decoded when decoding), which the
    cache then observes. Returns the images (count, 1, H, W) on the data scale."""
    like = next(model.parameters())
    _, height, width = model.spec.shape
    images = like.new_zeros(count, *model.spec.shape)
    state = model.incremental(count)
    for i in range(height * width):
        r, c = divmod(i, width)
        table = level_probabilities(model.head, state.params(r, c)[:, :, None, None], model.spec)[:, 0]
        value = torch.from_numpy(code_pixel(i, table)).to(dtype=like.dtype, device=like.device)
        images[:, 0, r, c] = value
        state.observe(value, r, c)
    return images


def encode_arm(model: AutoregressiveModel, x: torch.Tensor, batch_size: int,
               progress: Progress | None = None) -> tuple[np.ndarray, ARMCodeStats]:
    """Images (N, 1, H, W) on the data scale -> the ANS stack's words (uint32) and the ideal code lengths."""
    symbols = symbols_of(x)  # (N, D)
    coder = constriction.stream.stack.AnsCoder()
    family = categorical_family()
    bits = np.zeros(x.shape[0])
    for start, stop in reversed(batches(x.shape[0], batch_size)):
        batch = np.ascontiguousarray(symbols[start:stop].T)  # (D, B): pixel-major, the decode order
        tables = np.empty((batch.shape[0], stop - start, model.spec.levels))

        def known(i: int, table: np.ndarray) -> np.ndarray:
            tables[i] = table
            return batch[i]

        _raster_pass(model, stop - start, known)
        bits[start:stop] = ideal_bits(tables, batch).sum(0)
        coder.encode_reverse(batch.reshape(-1), family, tables.reshape(-1, model.spec.levels))
        if progress is not None:
            progress(stop - start)
    return coder.get_compressed(), ARMCodeStats(bits)


def decode_arm(model: AutoregressiveModel, words: np.ndarray, count: int, batch_size: int,
               progress: Progress | None = None) -> torch.Tensor:
    """The ANS stack's words -> ``count`` images (count, 1, H, W) on the CPU; the stack must end empty."""
    coder = constriction.stream.stack.AnsCoder(np.asarray(words, dtype=np.uint32))
    family = categorical_family()
    parts = []
    for start, stop in batches(count, batch_size):
        parts.append(_raster_pass(model, stop - start, lambda i, table: coder.decode(family, table)).cpu())
        if progress is not None:
            progress(stop - start)
    if not coder.is_empty():
        raise DGMError("the compressed stream holds more data than its images: corrupt file or another model")
    return torch.cat(parts) if parts else torch.zeros(0, *model.spec.shape)
