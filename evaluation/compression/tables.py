"""Probability tables for the entropy coder, and how the coder turns them into integers.

The coder reads one row of non-negative numbers per symbol: p(x_d = k | ...) for k = 0..L-1 (pixels), or
Q(bucket j | x) for j = 0..K-1 (latents). Rows are computed here **in float64 on the CPU** from the
network's float32 outputs, by the same function at encode and decode time, so the two sides hand the coder
bit-identical rows whenever the network outputs are bit-identical (``arm_coding`` and ``bits_back`` make
sure they are: the same code path, the same batches).

Quantisation (constriction's ``Categorical(perfect=False)``, 24-bit precision, deterministic integer and
IEEE float64 arithmetic in Rust): a row p_0..p_{n-1} with cumulative sums F_k = sum_{i<k} p_i / sum_i p_i
becomes the integer cumulative table::

    C_k = floor(F_k (2^24 - n)) + k,        C_n = 2^24,        q_k = (C_{k+1} - C_k) / 2^24 >= 2^-24

so every symbol keeps a nonzero mass (the "leaky" rule) and q_k >= p_k (1 - n 2^-24). The code length of
one symbol therefore exceeds its ideal -log2 p_k by at most ``quantisation_bound_bits(n)`` =
-log2(1 - n 2^-24) bits (2.2e-5 bits for n = 256; tested). ANS itself adds only the final state, at most
two 32-bit words per stack.
"""
from __future__ import annotations

import math

import constriction
import numpy as np
import torch

from data.specs import DatasetSpec
from models.likelihoods import Likelihood

#: bits of the coder's integer probabilities (constriction's default models for 32-bit words)
PRECISION = 24
#: tables of at most this many float64 entries are built at once (bounds the memory of 256-level heads)
MAX_TABLE_ENTRIES = 1 << 22


def categorical_family() -> object:
    """constriction's categorical model family with the fast, deterministic leaky quantisation above.

    ``perfect=False`` is set explicitly: it is the documented stable semantics (the default changes
    between constriction versions), and encoder and decoder must agree on it."""
    return constriction.stream.model.Categorical(perfect=False)


def quantisation_bound_bits(alphabet: int) -> float:
    """Most extra bits one symbol of an ``alphabet``-sized row can cost through quantisation: -log2(1 - n 2^-24)."""
    return -math.log2(1.0 - alphabet * 2.0 ** -PRECISION)


def level_probabilities(head: Likelihood, params: torch.Tensor, spec: DatasetSpec) -> np.ndarray:
    """Head parameters (n, C*P, H, W) -> p(x_d = k | params) as float64 rows (n, C*H*W, L), C-contiguous.

    Computed in float64 on the CPU (the head has no weights of its own, so only its inputs are cast), in
    chunks of images so that a 256-level mixture never builds more than ``MAX_TABLE_ENTRIES`` entries per
    component at once. Rows are exp(log p - max log p): unnormalised but exact ratios; the coder
    normalises (module docstring)."""
    params = params.detach().to(device="cpu", dtype=torch.float64)
    n = params.shape[0]
    per_image = spec.dim * spec.levels
    chunk = max(1, MAX_TABLE_ENTRIES // per_image)
    levels = torch.arange(spec.levels, dtype=torch.float64).reshape(-1, 1, 1, 1, 1)
    rows = []
    for start in range(0, n, chunk):
        base = head.distribution(params[start:start + chunk], spec).base_dist  # batch (b, C, H, W)
        log_probs = base.log_prob(levels).flatten(2).permute(1, 2, 0)  # (L, b, C, H, W) -> (b, D, L)
        rows.append(torch.exp(log_probs - log_probs.amax(-1, keepdim=True)))
    table = torch.cat(rows) if rows else params.new_zeros(0, spec.dim, spec.levels)
    return np.ascontiguousarray(table.numpy())


def ideal_bits(table: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """-log2 p(symbol) under the rows' own normalisation: table (..., n) float64, symbols (...) -> bits (...)."""
    chosen = np.take_along_axis(table, symbols[..., None].astype(np.int64), axis=-1)[..., 0]
    # a row entry that underflowed to 0 is still coded (at the leaky 2^-24): keep its ideal length finite
    return np.log2(table.sum(-1)) - np.log2(np.maximum(chosen, np.finfo(np.float64).tiny))


def symbols_of(x: torch.Tensor) -> np.ndarray:
    """Images on the data scale (n, C, H, W), float levels -> int32 symbols (n, C*H*W)."""
    return np.ascontiguousarray(x.detach().to("cpu").reshape(x.shape[0], -1).round().to(torch.int32).numpy())
