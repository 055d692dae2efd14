"""``inference.objectives.trace_checks`` is shared: the training objectives refuse a model latent the guide does not
sample with the estimators' one line, naming the sites (the program suite is ``tests/evaluation/test_user_programs.py``)."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from core.errors import DGMError
from inference.objectives.elbo import AnalyticKLTrace_ELBO
from inference.objectives.iwae import IWAE_ELBO
from inference.objectives.trace_checks import ExampleUnit


def model(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        e = pyro.sample("e", dist.Normal(torch.zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z + e, 1.0), obs=x)


def guide(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))


@pytest.mark.parametrize("objective", [AnalyticKLTrace_ELBO(), IWAE_ELBO(num_particles=3)], ids=["elbo", "iwae"])
def test_training_objectives_refuse_a_latent_the_guide_leaves_out(objective):
    with pytest.raises(DGMError, match="the model's latent site 'e' is not sampled by the guide; sample it in the guide"):
        objective.differentiable_loss(model, guide, torch.randn(4))


def test_the_example_unit_names_its_meaning_and_refuses_nonsense():
    assert ExampleUnit.of(False).per_example and ExampleUnit.of(True).plate is None
    assert ExampleUnit.of("groups").joint == "groups" and ExampleUnit.of(True).joint is True
    assert "joint log p(x_1..N)" in ExampleUnit.of(True).describe()
    with pytest.raises(DGMError, match="joint must be False, True or the name of a grouping plate"):
        ExampleUnit.of(3)
