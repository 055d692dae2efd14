"""Bad input to the ARMs ends in one clear DGMError: pixels outside the alphabet, wrong image size,
wrong labels, impossible options, data a head cannot represent."""
from __future__ import annotations

import pytest
import torch

from core.config import build_config
from core.errors import DGMError
from data.specs import DatasetSpec
from evaluation.estimators import exact
from inference.objectives.elbo import AnalyticKLTrace_ELBO
from models.arm.causal_conv1d import CausalConv1dConfig
from models.arm.gated_pixelcnn import GatedPixelCNNConfig
from models.arm.pixelcnn import PixelCNNConfig
from tests.models.arm.arm_testing import ARMS, build


@pytest.mark.parametrize("name", ARMS)
@pytest.mark.parametrize("dataset,bad,match", [
    ("binarized_digits", 2.0, r"pixels must be integers in 0\.\.1"),
    ("digits", 17.0, r"pixels must be integers in 0\.\.16"),
    ("digits", -1.0, r"0\.\.16"),
    ("digits", 0.5, r"0\.\.16"),
])
def test_values_outside_the_alphabet(name, dataset, bad, match):
    model = build(name, dataset, dtype=torch.float32)
    x = torch.zeros(3, 1, 8, 8)
    x[1, 0, 4, 4] = bad
    for call in (lambda: model.model(x), lambda: model.log_prob(x), lambda: model.log_marginal(x),
                 lambda: exact(model.model, model.guide, x)):
        with pytest.raises(DGMError, match=match):
            call()


@pytest.mark.parametrize("name", ARMS)
def test_wrong_image_size_and_type(name):
    model = build(name, "digits", dtype=torch.float32)
    with pytest.raises(DGMError, match=r"expected images of shape \(N, 1, 8, 8\) for digits, got \(2, 1, 28, 28\)"):
        model.log_prob(torch.zeros(2, 1, 28, 28))
    with pytest.raises(DGMError, match="expected images of shape"):
        exact(model.model, model.guide, torch.zeros(2, 64))
    with pytest.raises(DGMError, match="expected a float tensor"):
        model.model(torch.zeros(2, 1, 8, 8, dtype=torch.long))


def test_labels_are_checked():
    conditional = build("gated_pixelcnn", "digits", dtype=torch.float32, num_classes=10)
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(DGMError, match="class-conditional.*pass labels"):
        conditional.log_prob(x)
    with pytest.raises(DGMError, match="class-conditional"):  # what the shared trainer's images-only call meets
        AnalyticKLTrace_ELBO().differentiable_loss(conditional.model, conditional.guide, x)
    with pytest.raises(DGMError, match=r"labels must lie in 0\.\.9"):
        conditional.log_prob(x, torch.tensor([3, 10]))
    with pytest.raises(DGMError, match=r"integer tensor of shape \(2,\)"):
        conditional.log_prob(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(DGMError, match=r"integer tensor of shape \(2,\)"):
        conditional.log_prob(x, torch.tensor([1, 2, 3]))
    with pytest.raises(DGMError, match="unconditional"):
        build("pixelcnn", "digits").log_prob(x.double(), torch.tensor([0, 1]))
    with pytest.raises(DGMError, match="at least 1"):
        conditional.sample(0)


@pytest.mark.parametrize("cls,options,match", [
    (PixelCNNConfig, dict(first_kernel=4), "odd"), (PixelCNNConfig, dict(channels=3), "even"),
    (PixelCNNConfig, dict(residual_blocks=-1), "residual-blocks"),
    (PixelCNNConfig, dict(mixture_components=0), "mixture-components"),
    (GatedPixelCNNConfig, dict(kernel=1), "odd and >= 3"), (GatedPixelCNNConfig, dict(layers=0), "layers"),
    (GatedPixelCNNConfig, dict(num_classes=-1), "num-classes"),
    (CausalConv1dConfig, dict(dilation_cycle=0), "dilation-cycle"), (CausalConv1dConfig, dict(kernel=0), "kernel"),
])
def test_impossible_options(cls, options, match):
    with pytest.raises(DGMError, match=match):
        build_config(cls, options)


def test_head_and_data_set_mismatch():
    with pytest.raises(DGMError, match="bernoulli likelihood cannot represent digits.*accepts: binarized_digits"):
        build("pixelcnn", "digits", likelihood="bernoulli")
    with pytest.raises(DGMError, match="single-channel"):
        build("pixelcnn", DatasetSpec("rgb", (3, 8, 8), 256, (1, 1, 1), "colour images"))
