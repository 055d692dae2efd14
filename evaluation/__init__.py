"""Evaluation: log p(x) estimators, bits/dim, diagnostics, comparison reports.

Importing the package registers every estimator (``evaluation.estimator_registry``): the four of
``evaluation.estimators`` and ``ais``. A new estimator is one module that registers its spec, imported here.
"""
import core  # noqa: F401  (first: core.progress imports tqdm.auto quietly, before Pyro does)
from evaluation.estimator_registry import ESTIMATORS, EstimatorSpec, register_estimator
from evaluation.estimators import elbo, exact, importance_sampled, naive_monte_carlo
from evaluation.ais import annealed_importance_sampling

__all__ = ["ESTIMATORS", "EstimatorSpec", "annealed_importance_sampling", "elbo", "exact", "importance_sampled",
           "naive_monte_carlo", "register_estimator"]
