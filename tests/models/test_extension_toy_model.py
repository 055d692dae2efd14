"""README "How to extend": a new model family is one file. The toy family below is that whole file
(config, story, registration); registered, it trains and evaluates through the command lines, reloads
with ``load_run``, and passes the generic story checks, with nothing else edited."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from data.specs import DatasetSpec
from evaluation.evaluate import main as evaluate_main
from inference.train import main as train_main
from inference.training.load_run import load_run
from models.base import GenerativeModel
from models.registry import MODELS, register_model
from evaluation.result_files import result_paths
from tests.conftest import cli
from tests.models.story_harness import check_story


# ---- the one file a user writes ----------------------------------------------------------------------
@dataclass
class ToyConfig:
    """Options of ``python -m inference.train toy``."""

    latent_dim: int = field(default=2, metadata={"help": "latent dimensions"})


class ToyFactorModel(GenerativeModel):
    """z ~ N(0, I); x ~ Bernoulli(sigmoid(W z + b)) per pixel; guide z ~ N(A x + c, diag softplus(s)^2)."""

    def __init__(self, config: ToyConfig, spec: DatasetSpec):
        super().__init__(spec)
        self.decoder = nn.Linear(config.latent_dim, spec.dim)
        self.encoder = nn.Linear(spec.dim, 2 * config.latent_dim)
        self.latent_dim = config.latent_dim

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            logits = self.decoder(z).view(*z.shape[:-1], *self.spec.shape)  # any batch of z (particles too)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(3), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        loc, raw = self.encoder(x.flatten(1)).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor:
        probs = torch.sigmoid(self.decoder(torch.randn(n, self.latent_dim))).view(n, *self.spec.shape)
        return probs if mean else torch.bernoulli(probs)


def register_toy() -> None:
    register_model("toy", ToyConfig, description="a toy factor model")(ToyFactorModel)
# -------------------------------------------------------------------------------------------------------


@pytest.fixture
def toy_registered():
    register_toy()
    yield MODELS["toy"]
    del MODELS["toy"]


def test_a_registered_toy_family_trains_evaluates_and_reloads(toy_registered, tmp_path, capsys) -> None:
    out = tmp_path / "toy"
    code, _, err = cli(train_main, ["toy", "--dataset", "binarized_digits", "--epochs", "2", "--batch-size", "200",
                                    "--device", "cpu", "--out", out], capsys)
    assert code == 0, err
    assert json.loads((out / "eval_test.json").read_text())["estimators"]["elbo"]["1"]["nll"] > 0
    code, _, err = cli(evaluate_main, [str(out), "--num-samples", "10", "--limit", "20"], capsys)
    assert code == 0, err
    estimators = json.loads(result_paths(out, "test", limit=20)[0].read_text())["estimators"]
    assert {"naive_monte_carlo", "elbo", "importance_sampled"} <= set(estimators)
    run = load_run(out)
    assert isinstance(run.model, ToyFactorModel)
    check_story(run.model, run.dataset.spec)


def test_the_toy_family_is_on_the_command_line_with_its_options(toy_registered, capsys) -> None:
    code, out, _ = cli(train_main, ["toy", "--help"], capsys)
    assert code == 0 and "--latent-dim" in out
