"""Bits-back ANS for VAEs (Townsend, Bird & Barber, ICLR 2019): a file whose size is the negative ELBO.

Per image x, on an ANS stack that already holds some bits (``latent_buckets`` defines the buckets j of z)::

    encode:  j ~ Q(. | x)   DECODE j from the stack under Q(j | x)        gets back  -log2 Q(j | x)
             ENCODE x under p(x | z_j)                                 costs      -log2 p(x | z_j)
             ENCODE j under the prior, uniform over the K^L buckets    costs      L log2 K   (relabelled, below)
    decode:  the three steps reversed: pop j under the prior, pop x under p(x | z_j), push j back under
             Q(j | x) computed from the decoded x, which restores the stack as it was before this image

Popping j "decodes" it from bits that are already on the stack (the previous images' code, or the initial
bits), which makes j a sample of Q(j | x) and pays those bits back when the decoder pushes j again. The
stack grows by -log2 p(x | z_j) + L log2 K + log2 Q(j | x) per image, whose mean over j ~ Q is
E_Q[-log2 p(x | z_j)] + KL(Q || uniform): the negative ELBO of the discretised model, in bits.

Clean bits: relabelled buckets. The bits the next image pops are, at the top of the stack, this image's
buckets as pushed under the prior. They are uniform only if the buckets' aggregate over images is the
prior; an under-trained VAE's is not (posteriors too wide or too narrow overall), and a pop from such
"dirty" bits is no sample of Q: it gets back fewer bits than H(Q) and decodes a worse z (measured: +7% on
a 5-epoch VAE of binarized digits). So the prior codes the relabelled bucket (A j) mod 2^b, A odd
(``latent_buckets.scramble``): free, since the prior is uniform over labels, and it spreads the buckets of
one posterior over the whole label range, so that the next pop reads nearly uniform bits (then +0.1% on
that VAE, and no change on a well-fitted one, whose aggregate posterior is the prior already).

Chaining and initial bits. The first image of a chain has nothing to pop from, so the stack starts with
``initial_words`` pseudo-random 32-bit words (SHA-256 of the lane number, so the decoder knows them and
checks at the end that the stack has returned to exactly them). They cost their size once per chain:
the file's payload is ``initial_bits`` + the chain's net bits, and the net rate (payload - initial bits,
per image and per dimension) is what approaches -ELBO; both are reported. The seed is L b + 64 bits so
that the first pop (on average at most L b bits, the entropy of K^L buckets) rarely runs past it.

Lanes. Images are dealt round-robin to ``lanes`` independent chains (image j to lane j mod lanes), each
its own ANS stack: one step codes one image of every lane, with the encoder and decoder networks run on
all of them as one batch. More lanes are faster but pay the initial bits once per lane. The lane count is
in the header: the batch is part of the float computation that decoding must repeat exactly.

Probabilities: Q over buckets and p(x | z_j) over levels are float64 rows computed on the CPU from the
networks' float32 outputs (``latent_buckets``, ``tables``); the coder quantises them to 24 bits with every
symbol's mass nonzero. The prior is constriction's exact ``Uniform(K)`` (K divides 2^24).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable

import constriction
import numpy as np
import torch

from core.errors import DGMError
from evaluation.compression.latent_buckets import (LatentBuckets, bucket_values, posterior_bucket_masses, scramble,
                                                   unscramble)
from evaluation.compression.tables import categorical_family, ideal_bits, level_probabilities, symbols_of
from models.vae import VAE

Progress = Callable[[int], None]


@dataclass
class BitsBackStats:
    """Per image (N,), in bits: the stack's growth, and its ideal parts under the unquantised rows."""

    net_bits: np.ndarray        # num_valid_bits after the image minus before, on its lane's stack
    likelihood_bits: np.ndarray  # -log2 p(x | z_j)
    posterior_bits: np.ndarray   # -log2 Q(j | x): the bits got back
    prior_bits: float            # L log2 K, the same for every image
    initial_bits: int            # the initial words of all lanes (seal word included), paid once per lane

    @property
    def ideal_net_bits(self) -> np.ndarray:
        return self.likelihood_bits + self.prior_bits - self.posterior_bits


def initial_word_count(latent_dim: int, buckets: LatentBuckets) -> int:
    """Seed words per lane: L b + 64 bits, in 32-bit words."""
    return math.ceil((latent_dim * buckets.bits + 64) / 32)


def initial_words(lane: int, count: int) -> np.ndarray:
    """``count`` pseudo-random uint32 words for ``lane``: SHA-256 of ("dgm-bits-back", lane, block), platform-stable."""
    blocks = b"".join(hashlib.sha256(f"dgm-bits-back|{lane}|{block}".encode()).digest()
                      for block in range(math.ceil(count / 8)))
    return np.frombuffer(blocks, dtype="<u4")[:count].astype(np.uint32)


def steps(count: int, lanes: int) -> list[tuple[int, int]]:
    """(start, stop) of each step: images start..stop-1, image start + k on lane k."""
    if lanes < 1:
        raise DGMError(f"--lanes must be at least 1, got {lanes}")
    return [(start, min(count, start + lanes)) for start in range(0, count, lanes)]


def _posterior_rows(model: VAE, x: torch.Tensor, buckets: LatentBuckets) -> np.ndarray:
    """Q(j | x) per latent dimension, (n, L, K) float64, from the encoder on a batch x (n, C, H, W)."""
    loc, scale = model.encode(x)
    return posterior_bucket_masses(loc, scale, buckets)


def _likelihood_rows(model: VAE, indices: np.ndarray, buckets: LatentBuckets) -> np.ndarray:
    """p(x_d = k | z_j) for bucket indices (n, L): float64 rows (n, D, levels) from the decoder on the medians."""
    like = next(model.parameters())
    return level_probabilities(model.head, model.decoder(bucket_values(indices, buckets, like)), model.spec)


@torch.no_grad()
def encode_vae(model: VAE, x: torch.Tensor, lanes: int, buckets: LatentBuckets,
               progress: Progress | None = None) -> tuple[list[np.ndarray], BitsBackStats]:
    """Images (N, C, H, W) on the data scale -> one stack of words per lane (uint32) and the code lengths."""
    like = next(model.parameters())
    n, latent = x.shape[0], model.latent_dim
    seed_words = initial_word_count(latent, buckets)
    coders = [constriction.stream.stack.AnsCoder(initial_words(k, seed_words), seal=True) for k in range(min(lanes, n))]
    initial = sum(c.num_bits() for c in coders)
    family, prior = categorical_family(), constriction.stream.model.Uniform(buckets.count)
    symbols = symbols_of(x)
    net, likelihood, posterior = np.zeros(n), np.zeros(n), np.zeros(n)
    for start, stop in steps(n, lanes):
        q = _posterior_rows(model, x[start:stop].to(like), buckets)
        before = [coders[k].num_valid_bits() for k in range(stop - start)]
        z = np.stack([coders[k].decode(family, q[k]) for k in range(stop - start)])  # (b, L): j ~ Q(. | x)
        p = _likelihood_rows(model, z, buckets)
        for k in range(stop - start):
            coders[k].encode_reverse(symbols[start + k], family, p[k])
            coders[k].encode_reverse(scramble(z[k], buckets.bits), prior)
            net[start + k] = coders[k].num_valid_bits() - before[k]
        likelihood[start:stop] = ideal_bits(p, symbols[start:stop]).sum(-1)
        posterior[start:stop] = ideal_bits(q, z).sum(-1)
        if progress is not None:
            progress(stop - start)
    stats = BitsBackStats(net, likelihood, posterior, latent * buckets.bits, initial)
    return [c.get_compressed() for c in coders], stats


@torch.no_grad()
def decode_vae(model: VAE, streams: list[np.ndarray], count: int, lanes: int, buckets: LatentBuckets,
               seed_words: int, progress: Progress | None = None) -> torch.Tensor:
    """One stack per lane -> ``count`` images (count, C, H, W) on the CPU; every stack must end at its
    ``seed_words`` initial words."""
    like = next(model.parameters())
    if len(streams) != min(lanes, count):
        raise DGMError(f"the file holds {len(streams)} streams for {min(lanes, count)} lanes: corrupt header")
    coders = [constriction.stream.stack.AnsCoder(np.asarray(words, dtype=np.uint32)) for words in streams]
    family, prior = categorical_family(), constriction.stream.model.Uniform(buckets.count)
    latent, shape = model.latent_dim, model.spec.shape
    images = torch.zeros(count, *shape)
    for start, stop in reversed(steps(count, lanes)):
        z = np.stack([unscramble(coders[k].decode(prior, latent), buckets.bits) for k in range(stop - start)])
        p = _likelihood_rows(model, z, buckets)
        symbols = np.stack([coders[k].decode(family, p[k]) for k in range(stop - start)])
        x = torch.from_numpy(symbols).reshape(stop - start, *shape).to(like)
        q = _posterior_rows(model, x, buckets)
        for k in range(stop - start):
            coders[k].encode_reverse(z[k], family, q[k])  # give the borrowed bits back
        images[start:stop] = x.cpu()
        if progress is not None:
            progress(stop - start)
    for k, coder in enumerate(coders):
        try:
            rest = coder.get_compressed(unseal=True)
        except Exception:  # constriction refuses to unseal a stack that does not end in the seal word
            rest = None
        if rest is None or not np.array_equal(rest, initial_words(k, seed_words)):
            raise DGMError(f"lane {k}'s stack did not return to its initial bits after decoding: the file does "
                           "not belong to this model or was computed differently (corrupt or float mismatch)")
    return images
