"""Pyro distributions of our own, for likelihoods Pyro does not provide."""
from models.distributions.discretized_logistic_mixture import DiscretizedLogisticMixture

__all__ = ["DiscretizedLogisticMixture"]
