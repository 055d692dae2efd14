"""README "How to extend: a new flow layer": a new layer is one file. The toy below is that whole file (its
maths, the amortised layer, its registrations as a transform and as a VAE posterior family with an
option); registered, it passes the generic transform checks, the generic posterior checks, and trains a VAE
through ``python -m inference.train vae --posterior-flow toy_shift_scale``, with nothing else edited."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch

from core.errors import DGMError
from data.specs import DATASETS
from inference.train import main as train_main
from inference.training.load_run import load_run
from models.flows.amortized import AmortizedTransformModule, split_last
from models.flows.parametric import LayerMaths
from models.flows.registry import TRANSFORMS, randomize_, register_transform
from models.flows.vae_families import FAMILIES, LayerRequest, register_flow_family
from models.vae import VAE, VAEConfig
from tests.conftest import cli
from tests.models.flows.transform_checks import check_transform
from tests.models.story_harness import check_story
from tests.models.vae_flow_checks import POSTERIOR_CHECKS


# ---- the one file a user writes (models/flows/shift_scale.py) ----------------------------------------
def shift_scale_forward(x: torch.Tensor, log_scale: torch.Tensor,
                        shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x * exp(s) + t, log |det dy/dx| = sum_i s_i; x (..., D), s, t (..., D) broadcast."""
    y = x * log_scale.exp() + shift
    return y, torch.broadcast_to(log_scale.sum(-1), y.shape[:-1])


def shift_scale_inverse(y: torch.Tensor, log_scale: torch.Tensor,
                        shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x = (y - t) * exp(-s), and log |det dy/dx| of the forward map."""
    x = (y - shift) * (-log_scale).exp()
    return x, torch.broadcast_to(log_scale.sum(-1), x.shape[:-1])


class AmortizedShiftScale(AmortizedTransformModule):
    """y = x * exp(s(h)) + t(h), s = limit tanh(r / limit): an elementwise affine layer set by the context h."""

    maths = LayerMaths(shift_scale_forward, shift_scale_inverse)

    def __init__(self, dim: int, context_features: int, limit: float = 2.0):
        self.limit = limit
        super().__init__(dim, context_features)

    def num_params(self) -> int:
        return 2 * self.dim

    def layer_params(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, shift = split_last(params, [self.dim, self.dim])
        return self.limit * torch.tanh(raw / self.limit), shift


@dataclass
class ShiftScaleOptions:
    """``--flow-options`` of ``toy_shift_scale``."""

    limit: float = field(default=2.0, metadata={"help": "bound of the log-scales |s| <= limit"})


def check_limit(request: LayerRequest, options: ShiftScaleOptions, label: Callable[[str], str]) -> None:
    if not options.limit > 0:
        raise DGMError(f"{label('limit')} must be positive, got {options.limit}")


def shift_scale_layers(request: LayerRequest, options: ShiftScaleOptions) -> list[AmortizedShiftScale]:
    return [AmortizedShiftScale(request.latent_dim, request.context, options.limit) for _ in range(request.length)]


def register_toy() -> None:
    register_transform("toy_shift_scale", AmortizedShiftScale,
                       lambda shape, ctx, gen: randomize_(AmortizedShiftScale(shape[0], ctx), gen, 0.5),
                       conditional=True, description="elementwise affine layer set by a context")
    register_flow_family("posterior", "toy_shift_scale", "toy_shift_scale", shift_scale_layers,
                         options=ShiftScaleOptions, check=check_limit)
# -------------------------------------------------------------------------------------------------------


@pytest.fixture
def toy_registered():
    register_toy()
    yield TRANSFORMS["toy_shift_scale"]
    del TRANSFORMS["toy_shift_scale"], FAMILIES["posterior"]["toy_shift_scale"]


def test_the_toy_transform_passes_the_generic_transform_checks(toy_registered) -> None:
    ran = check_transform(toy_registered)
    assert {"inverse_of_forward_and_forward_of_inverse", "log_det_of_call_matches_autograd",
            "log_det_of_inverse_matches_autograd", "conditional_context_broadcasts_over_the_batch"} <= set(ran)


@pytest.mark.parametrize("check", POSTERIOR_CHECKS, ids=lambda check: check.__name__)
def test_the_toy_family_passes_the_generic_posterior_checks(toy_registered, check) -> None:
    config = VAEConfig(latent_dim=3, hidden=(16,), flow_context=4, flow_length=2, posterior_flow="toy_shift_scale")
    config.validate()
    torch.manual_seed(0)
    vae = VAE(config, DATASETS["binarized_digits"]).double()
    randomize_(vae.posterior_flow, torch.Generator().manual_seed(1), 0.3)
    x = torch.bernoulli(torch.full((4, 1, 8, 8), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    check(vae, x)


def test_a_vae_with_the_toy_posterior_trains_from_the_command_line_and_reloads(toy_registered, tmp_path,
                                                                                capsys) -> None:
    out = tmp_path / "toy"
    code, _, err = cli(train_main, ["vae", "--dataset", "binarized_digits", "--latent-dim", "4", "--hidden", "32",
                                    "--posterior-flow", "toy_shift_scale", "--flow-length", "2", "--flow-context", "8",
                                    "--flow-options", "limit=1.5", "--epochs", "1", "--batch-size", "200",
                                    "--device", "cpu", "--out", out], capsys)
    assert code == 0, err
    options = json.loads((out / "config.json").read_text())["model_options"]
    assert options["posterior_flow"] == "toy_shift_scale" and options["flow_options"] == ["limit=1.5"]
    run = load_run(out)
    layers = run.model.posterior_flow
    assert len(layers) == 2 and all(isinstance(t, AmortizedShiftScale) and t.limit == 1.5 for t in layers)
    check_story(run.model, run.dataset.spec)


def test_the_toy_family_and_its_option_are_on_the_command_line(toy_registered, tmp_path, capsys) -> None:
    code, out, _ = cli(train_main, ["vae", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0 and "toy_shift_scale" in text and "toy_shift_scale: limit (bound of the log-scales" in text
    code, _, err = cli(train_main, ["vae", "--posterior-flow", "toy_shift_scale", "--flow-options", "limit=-1",
                                    "--out", tmp_path / "bad"], capsys)
    assert code == 2 and "--flow-options limit must be positive, got -1.0" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


def test_every_file_of_the_flows_package_is_imported_with_it() -> None:
    """So a new file in models/flows/ registers itself with no import added anywhere (models/flows/__init__.py)."""
    import pkgutil
    import sys

    import models.flows

    names = [f"models.flows.{m.name}" for m in pkgutil.iter_modules(models.flows.__path__)]
    assert "models.flows.vae_families" in names and all(name in sys.modules for name in names)
