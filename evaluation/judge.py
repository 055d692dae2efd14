"""The evaluation layer's services to training (``inference.training.judge.Judge``), handed to every
trainer by the training command: the test evaluation after training, and the GAN's validation criterion.

* ``evaluate_likelihood``: ``evaluation.evaluate.evaluate_run`` on the test split;
* ``evaluate_samples``: ``evaluation.sample_quality.run_sample_quality`` (FD, KID, class histogram
  against the test split, with the data set's floor);
* ``sample_criterion``: FD (and class entropy) of generated images against the first ``n`` validation
  images, in the features of the project's classifier (trained once per data-set family if missing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from evaluation.classifier import FeatureClassifier, get_classifier
from evaluation.evaluate import evaluate_run
from evaluation.sample_quality import FeatureReference, model_samples, run_sample_quality


@dataclass
class FeatureCriterion:
    """FD and class entropy of ``size`` samples against a fixed set of validation images."""

    classifier: FeatureClassifier
    reference: FeatureReference

    @property
    def size(self) -> int:
        return int(self.reference.features.shape[0])

    def score_model(self, model: Any, seed: int, device: torch.device) -> dict[str, float]:
        samples = model_samples(model, self.size, seed=seed)
        scores = self.reference.score(samples, seed=seed, bootstrap=0, kid=False, device=device)
        return {"fd": scores["fd"], "class_entropy": scores["class_entropy"]}


class EvaluationJudge:
    """The evaluation services of ``inference.training.judge.Judge``."""

    def evaluate_likelihood(self, run: Any, estimators: Sequence[str], num_samples: Sequence[int],
                            device: torch.device) -> dict[str, Any]:
        return evaluate_run(run, "test", list(estimators), list(num_samples), device=device)

    def evaluate_samples(self, run: Any, device: torch.device) -> dict[str, Any]:
        return run_sample_quality(run, device=device)

    def classifier(self, dataset: Any) -> FeatureClassifier:
        return get_classifier(dataset.name, data_dir=str(dataset.directory))

    def sample_criterion(self, dataset: Any, n: int, device: torch.device) -> FeatureCriterion:
        classifier = self.classifier(dataset)
        x_val = dataset.split("val")
        return FeatureCriterion(classifier, FeatureReference.of(classifier, x_val[:min(n, x_val.shape[0])],
                                                                 dataset.spec.levels, device))
