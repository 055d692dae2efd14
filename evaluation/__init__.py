"""Evaluation: log p(x) estimators, bits/dim, diagnostics, comparison reports."""
from evaluation.estimators import ESTIMATORS, elbo, exact, importance_sampled, naive_monte_carlo
from evaluation.ais import annealed_importance_sampling

# registered here rather than in estimators.py: ais.py builds on estimators.py's helpers
ESTIMATORS["ais"] = annealed_importance_sampling

__all__ = ["ESTIMATORS", "annealed_importance_sampling", "elbo", "exact", "importance_sampled", "naive_monte_carlo"]
