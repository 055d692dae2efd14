"""Probability tables and the coder's integer quantisation: every symbol codable, the overhead bound holds,
and the float64 rows are the heads' own distributions."""
from __future__ import annotations

import constriction
import numpy as np
import pytest
import torch

import evaluation.compression.tables as tables
from data.specs import DATASETS
from evaluation.compression.bits_back import initial_words
from evaluation.compression.tables import (categorical_family, ideal_bits, level_probabilities,
                                           quantisation_bound_bits, symbols_of)
from models.likelihoods import likelihood


def _random_rows(rng: np.random.Generator, n: int, size: int, spread: float) -> np.ndarray:
    logits = rng.normal(size=(n, size)) * spread
    return np.exp(logits - logits.max(1, keepdims=True))


@pytest.mark.parametrize("size, spread", [(2, 6.0), (256, 3.0), (4096, 2.0)])
def test_code_length_is_ideal_plus_at_most_the_quantisation_bound(size, spread):
    """On a stack already in its steady state (seeded), pushing symbols drawn from the rows costs their ideal
    -log2 p plus at most -log2(1 - n 2^-24) bits each, plus the ANS state (a constant of at most 64 bits)."""
    rng = np.random.default_rng(size)
    n = 200_000 // size * 8 if size > 2 else 200_000
    rows = _random_rows(rng, n, size, spread)
    probs = rows / rows.sum(1, keepdims=True)
    symbols = (probs.cumsum(1) > rng.random((n, 1))).argmax(1).astype(np.int32)
    coder = constriction.stream.stack.AnsCoder(initial_words(0, 8), seal=True)
    start = coder.num_valid_bits()
    coder.encode_reverse(symbols, categorical_family(), rows)
    cost = coder.num_valid_bits() - start
    ideal = ideal_bits(rows, symbols).sum()
    assert cost <= ideal + n * quantisation_bound_bits(size) + 64
    assert cost >= ideal - 64 - n * 2.0 ** -20  # a symbol can gain at most 2^-23 of mass from the rounding
    assert np.array_equal(coder.decode(categorical_family(), rows), symbols)


def test_every_symbol_keeps_a_nonzero_mass():
    """Rows with exact zeros and underflowing entries still code every symbol (the leaky rule)."""
    row = np.array([0.0, 1e-300, 0.5, 0.0, 0.5, 3e-9])
    symbols = np.arange(row.size, dtype=np.int32)
    rows = np.tile(row, (row.size, 1))
    coder = constriction.stream.stack.AnsCoder(initial_words(1, 4), seal=True)
    coder.encode_reverse(symbols, categorical_family(), rows)
    assert np.array_equal(coder.decode(categorical_family(), rows), symbols)
    assert np.isfinite(ideal_bits(rows, symbols)).all()


@pytest.mark.parametrize("name, dataset", [("bernoulli", "binarized_digits"), ("categorical", "digits"),
                                           ("logistic_mixture", "mnist")])
def test_rows_are_the_heads_distribution(name, dataset):
    """sum_d log row_d[x_d] / sum_k row_d[k] equals the head's log p(x | params) for a random image, and the
    rows are float64 whatever the parameters' dtype."""
    spec = DATASETS[dataset]
    head = likelihood(name, spec, mixture_components=3)
    torch.manual_seed(0)
    params = torch.randn(2, spec.shape[0] * head.params_per_pixel(spec.levels), *spec.shape[1:]) * 2
    x = torch.randint(0, spec.levels, (2, *spec.shape)).float()
    rows = level_probabilities(head, params, spec)
    assert rows.dtype == np.float64 and rows.shape == (2, spec.dim, spec.levels)
    expected = head.distribution(params.double(), spec).log_prob(x.double())
    got = -ideal_bits(rows, symbols_of(x)).sum(-1) * np.log(2.0)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-12, atol=1e-9)


def test_rows_are_computed_in_chunks_without_changing_them(monkeypatch):
    """The memory bound (chunks of images) gives the same rows bit for bit as one pass."""
    spec = DATASETS["digits"]
    head = likelihood("logistic_mixture", spec, mixture_components=2)
    params = torch.randn(5, head.params_per_pixel(spec.levels), *spec.shape[1:])
    whole = level_probabilities(head, params, spec)
    monkeypatch.setattr(tables, "MAX_TABLE_ENTRIES", spec.dim * spec.levels * 2)  # 2 images a chunk
    assert np.array_equal(level_probabilities(head, params, spec), whole)
