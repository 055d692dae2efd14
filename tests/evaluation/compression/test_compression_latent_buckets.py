
"""Equal-prior-mass latent buckets and the discretised posterior."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from core.errors import DGMError
from evaluation.compression.latent_buckets import (bucket_values, latent_buckets, posterior_bucket_masses, scramble,
                                                   unscramble)


def test_buckets_have_equal_prior_mass_and_median_centres():
    buckets = latent_buckets(8)
    prior = posterior_bucket_masses(torch.zeros(1, 1), torch.ones(1, 1), buckets)[0, 0]
    np.testing.assert_allclose(prior, np.full(256, 1 / 256), rtol=1e-9)
    assert torch.isinf(buckets.edges[0]) and torch.isinf(buckets.edges[-1]) and buckets.edges[0] < 0
    np.testing.assert_allclose(torch.special.ndtr(buckets.centres).numpy(), (np.arange(256) + 0.5) / 256, rtol=1e-12)
    assert (buckets.edges[:-1] < buckets.centres).all() and (buckets.centres < buckets.edges[1:]).all()


def test_posterior_masses_are_accurate_in_both_tails():
    """Masses sum to 1 and match scipy's normal CDF, with full relative precision for buckets deep in either
    tail (the survival-function form avoids differences of numbers near 1)."""
    buckets = latent_buckets(12)
    loc = torch.tensor([[-3.0, 0.3, 3.0]])
    scale = torch.tensor([[0.02, 0.5, 0.02]])
    masses = posterior_bucket_masses(loc, scale, buckets)[0]
    np.testing.assert_allclose(masses.sum(-1), 1.0, atol=1e-12)
    edges = buckets.edges.numpy()
    for l in range(3):
        mu, sigma = float(loc[0, l]), float(scale[0, l])
        expected = norm.sf((edges[:-1] - mu) / sigma) - norm.sf((edges[1:] - mu) / sigma)
        lower = norm.cdf((edges[1:] - mu) / sigma) - norm.cdf((edges[:-1] - mu) / sigma)
        expected = np.where(edges[:-1] > mu, expected, lower)
        big = expected > 1e-250
        np.testing.assert_allclose(masses[l][big], expected[big], rtol=1e-7)
    # the upper-tail posterior N(3, 0.02^2) puts its mass on the buckets around Phi(3): tiny, but resolved
    assert masses[2][np.searchsorted(edges, 3.0) - 1] > 0.1


def test_bucket_values_index_the_medians():
    buckets = latent_buckets(4)
    values = bucket_values(np.array([[0, 15], [7, 8]]), buckets, torch.zeros(1, dtype=torch.float32))
    assert values.dtype == torch.float32
    assert values[0, 0] < -1.8 and values[0, 1] > 1.8 and values[1, 0] == -values[1, 1]


@pytest.mark.parametrize("bits", [0, 17, 2.5, True])
def test_bad_latent_precision_is_refused(bits):
    with pytest.raises(DGMError, match="--latent-bits"):
        latent_buckets(bits)


@pytest.mark.parametrize("bits", [1, 4, 12, 16])
def test_relabelling_is_a_bijection(bits):
    j = np.arange(1 << bits, dtype=np.int32)
    labels = scramble(j, bits)
    assert np.array_equal(np.sort(labels), j) and np.array_equal(unscramble(labels, bits), j)
    if bits >= 4:  # neighbours land far apart
        assert np.median(np.abs(np.diff(labels.astype(np.int64)))) > (1 << bits) / 8
