"""The discretised latent space of bits-back coding: K = 2^b buckets of equal prior mass per dimension.

Under the prior p(z_l) = N(0, 1) each latent dimension is cut at the normal quantiles::

    e_j = Phi^-1(j / K),  j = 0..K      (e_0 = -inf, e_K = +inf),   so  P(bucket j) = 1/K  exactly

and bucket j is represented by its prior median z_j = Phi^-1((j + 1/2) / K), the point the decoder network
sees. Coding z under the prior is then coding a uniform symbol: b bits per dimension, with no quantisation
error at all (K divides 2^24).

The posterior q(z_l | x) = N(mu_l, sigma_l^2) gives bucket j the mass (float64, CPU)::

    Q_j = Phi(t_{j+1}) - Phi(t_j),   t_j = (e_j - mu_l) / sigma_l,

evaluated as Phi(-t_j) - Phi(-t_{j+1}) where t_j > 0, so that buckets in the upper tail are differences of
small survival probabilities rather than of numbers near 1 (no cancellation), with the smaller tail
computed as erfc(|t| / sqrt 2) / 2 (accurate down to 1e-308). The coder's leaky
quantisation (``tables``) gives every bucket at least 2^-24, so any bucket can be pushed back.

What is approximated, and by how much. The coded image costs -log2 p(x | z_j) for the bucket's median
instead of a continuous draw, and the rate's KL part is KL(Q || uniform over buckets), which is at most
the continuous KL(q || p) (data processing: both are pushed through the same bucket map). With b = 12
the central buckets are 6e-4 wide, far narrower than the posterior standard deviations of an MNIST VAE
(typically 0.05-1), so the net rate is -ELBO up to Monte-Carlo noise (measured in ``benchmarks.compression``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.errors import DGMError

#: latent precision b: bits per latent dimension (K = 2^b buckets)
DEFAULT_LATENT_BITS = 12
MAX_LATENT_BITS = 16


@dataclass(frozen=True)
class LatentBuckets:
    """Edges e_0..e_K (K + 1,) and medians z_0..z_{K-1} (K,) of the equal-prior-mass buckets, float64."""

    bits: int
    edges: torch.Tensor
    centres: torch.Tensor

    @property
    def count(self) -> int:
        return 1 << self.bits


def latent_buckets(bits: int = DEFAULT_LATENT_BITS) -> LatentBuckets:
    """The K = 2^bits buckets of the module docstring (float64 normal quantiles, computed on the CPU)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_LATENT_BITS:
        raise DGMError(f"--latent-bits must be an integer in 1..{MAX_LATENT_BITS}, got {bits!r}")
    count = 1 << bits
    grid = torch.arange(count + 1, dtype=torch.float64) / count
    edges = torch.special.ndtri(grid)  # ndtri(0) = -inf, ndtri(1) = +inf
    centres = torch.special.ndtri((torch.arange(count, dtype=torch.float64) + 0.5) / count)
    return LatentBuckets(bits, edges, centres)


def posterior_bucket_masses(loc: torch.Tensor, scale: torch.Tensor, buckets: LatentBuckets) -> np.ndarray:
    """Q(bucket j | x) per latent dimension: loc, scale (n, L) -> float64 rows (n, L, K), C-contiguous.

    Cast to float64 on the CPU first (the network's float32 outputs are the only input), then the
    tail-stable difference of normal CDFs of the module docstring."""
    loc = loc.detach().to("cpu", torch.float64)[..., None]
    scale = scale.detach().to("cpu", torch.float64)[..., None]
    t = (buckets.edges - loc) / scale  # (n, L, K + 1)
    # the smaller of Phi(t) and 1 - Phi(t), to full relative precision: erfc, not torch's ndtr, which computes
    # (1 + erf) / 2 and rounds to 0 below t = -8.3
    tail = 0.5 * torch.special.erfc(t.abs() / math.sqrt(2.0))
    cdf = torch.where(t <= 0, tail, 1.0 - tail)
    survival = torch.where(t > 0, tail, 1.0 - tail)
    masses = torch.where(t[..., :-1] > 0, survival[..., :-1] - survival[..., 1:], cdf[..., 1:] - cdf[..., :-1])
    return np.ascontiguousarray(masses.clamp_min(0.0).numpy())


def bucket_values(indices: np.ndarray, buckets: LatentBuckets, like: torch.Tensor) -> torch.Tensor:
    """Bucket indices (n, L) -> their medians z_j as a tensor of ``like``'s dtype and device (the decoder's input)."""
    values = buckets.centres[torch.from_numpy(np.asarray(indices, dtype=np.int64))]
    return values.to(dtype=like.dtype, device=like.device)


#: odd multiplier of the bucket relabelling: round(2^32 / golden ratio), odd
_SCRAMBLE = 0x9E3779B9


def scramble(indices: np.ndarray, bits: int) -> np.ndarray:
    """Relabel buckets j -> (A j) mod 2^b, A odd (a bijection of 0..2^b-1): what is pushed under the prior.

    The prior is uniform over buckets, so any relabelling costs the same b bits. It matters for the next
    image, which pops its buckets from these very bits: relabelled, neighbouring buckets of one posterior
    land far apart (A/2^b is the golden ratio's fraction: a low-discrepancy spread), so the next pop reads
    bits whose distribution is close to uniform even when the aggregate posterior is not the prior."""
    mask = (1 << bits) - 1
    return ((indices.astype(np.int64) * _SCRAMBLE) & mask).astype(np.int32)


def unscramble(labels: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of :func:`scramble`: j = (A^-1 label) mod 2^b."""
    mask = (1 << bits) - 1
    inverse = pow(_SCRAMBLE, -1, 1 << bits)
    return ((labels.astype(np.int64) * inverse) & mask).astype(np.int32)
