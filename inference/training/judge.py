"""What a trainer may ask of the evaluation layer, as a protocol the trainers depend on (and
``evaluation.judge`` implements): training never imports evaluation, the entry point hands a judge in.

* ``evaluate_likelihood(run, estimators, num_samples)``: the test-set estimates written after training
  (``eval_test.json``: the ELBO with one sample, or the exact log-likelihood).
* ``evaluate_samples(run)``: sample quality of a trained run against the test split
  (``sample_quality_test.json``), for models trained without a likelihood (GANs).
* ``sample_criterion(dataset, n, device)``: a validation criterion on ``n`` validation images in the
  feature space of the project's classifier (the GAN's ``val_fd``), and that classifier.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch


class SampleCriterion(Protocol):
    """Scores generated images against a fixed set of validation images (lower FD is better)."""

    classifier: Any
    size: int

    def score_model(self, model: Any, seed: int, device: torch.device) -> dict[str, float]:
        """``{"fd": ..., "class_entropy": ...}`` of ``size`` samples of ``model`` drawn with ``seed``."""
        ...


class Judge(Protocol):
    def evaluate_likelihood(self, run: Any, estimators: Sequence[str], num_samples: Sequence[int],
                            device: torch.device) -> dict[str, Any]: ...

    def evaluate_samples(self, run: Any, device: torch.device) -> dict[str, Any]: ...

    def sample_criterion(self, dataset: Any, n: int, device: torch.device) -> SampleCriterion: ...

    def classifier(self, dataset: Any) -> Any: ...
