"""Evaluation: log p(x) estimators, bits/dim, diagnostics, comparison reports."""
from evaluation.estimators import ESTIMATORS, elbo, exact, importance_sampled, naive_monte_carlo

__all__ = ["ESTIMATORS", "elbo", "exact", "importance_sampled", "naive_monte_carlo"]
