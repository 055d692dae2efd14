"""The generic checks every registered estimator must pass (``tests/evaluation/test_estimator_registry.py`` runs
them on each spec of ``evaluation.ESTIMATORS``, and on a toy registered by the test of extension).

On a probabilistic PCA with closed-form log p(x) and its exact-posterior guide:

- the conventions' signature: float64 (N,), or with ``return_log_weights`` (estimates (N,), log_weights (N, K));
  the same values whatever ``chunk_size``, on the same seed;
- the same estimate when ``evaluate`` runs it (grouped with the other estimators of its pass, or by itself);
- one-line ``DGMError``s for K < 1 and no examples; a ``TypeError`` for an option it does not have.
"""
from __future__ import annotations

import pytest
import torch

from core.errors import DGMError
from evaluation.estimator_registry import EstimatorSpec
from evaluation.evaluate import evaluate_model
from models.ppca import PPCA

#: options that keep costly estimators quick in these checks
QUICK_OPTIONS = {"ais": {"num_steps": 5, "leapfrog_steps": 2}}


def ppca_and_data(n: int = 12) -> tuple[PPCA, torch.Tensor]:
    model = PPCA.random(data_dim=5, latent_dim=2, seed=0)
    torch.manual_seed(1)
    return model, model.sample(n)


def check_signature_and_shapes(spec: EstimatorSpec, k: int = 6) -> None:
    model, x = ppca_and_data()
    options = QUICK_OPTIONS.get(spec.name, {})
    torch.manual_seed(2)
    est = spec.function(model.model, model.guide, x, k, **options)
    assert est.dtype == torch.float64 and est.shape == (x.shape[0],) and torch.isfinite(est).all()
    torch.manual_seed(2)
    again, log_w = spec.function(model.model, model.guide, x, k, return_log_weights=True, **options)
    torch.testing.assert_close(again, est, rtol=0, atol=1e-12)
    assert log_w.dtype == torch.float64 and log_w.shape == (x.shape[0], k)


def check_evaluate_runs_it(spec: EstimatorSpec, k: int = 6) -> None:
    """``evaluate`` gives what the function gives: the same pass (or run) on the same noise."""
    model, x = ppca_and_data()
    options = {spec.name: spec.make_options(QUICK_OPTIONS.get(spec.name, {}))} if spec.options else None
    summaries, rows = evaluate_model(model, x, [spec.name], [k], 5, log=None, options=options)
    key = str(k if spec.uses_samples else 1)
    assert set(summaries) == {spec.name} and key in summaries[spec.name]
    assert len(rows) == x.shape[0] and {r[1] for r in rows} == {spec.name}
    values = torch.tensor([r[3] for r in rows], dtype=torch.float64)
    assert summaries[spec.name][key]["log_likelihood"] == pytest.approx(float(values.mean()))


def check_bad_input(spec: EstimatorSpec) -> None:
    model, x = ppca_and_data(3)
    for k in (0, -3, 2.5, True):
        with pytest.raises(DGMError, match="positive integer"):
            spec.function(model.model, model.guide, x, k)
    with pytest.raises(DGMError, match="no examples"):
        spec.function(model.model, model.guide, x[:0], 2)
    with pytest.raises(TypeError, match="no_such_option"):
        spec.function(model.model, model.guide, x, 2, no_such_option=1)


def check_all(spec: EstimatorSpec) -> None:
    check_signature_and_shapes(spec)
    check_evaluate_runs_it(spec)
    check_bad_input(spec)
