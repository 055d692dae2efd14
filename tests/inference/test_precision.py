"""--precision: bf16 autocast of the networks in training on CPU; fp16 refused without CUDA."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.errors import DGMError
from data import load_dataset
from inference.training.adversarial_trainer import AdversarialTrainer
from inference.training.precision import Precision
from inference.train import main as train_main
from inference.training.config import TrainConfig
from inference.training.svi_trainer import SVITrainer
from models.gan.model import GANConfig, build_gan
from models.vae import VAEConfig, build_vae
from tests.conftest import cli
from inference.objectives.registry import objective_for

CPU = torch.device("cpu")


def _vae() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_vae(VAEConfig(latent_dim=4, hidden=(64, 64)), load_dataset("binarized_digits").spec)


def test_bf16_runs_the_networks_in_bf16_and_the_loss_in_fp32_close_to_fp32() -> None:
    """Same weights and noise: the bf16 loss (networks in bf16, likelihood and KL in fp32) is within 1% of fp32's."""
    vae = _vae()
    x = load_dataset("binarized_digits").split("train")[:256]
    objective = objective_for(vae)
    inner = next(m for m in vae.encoder.modules() if isinstance(m, torch.nn.Linear))  # inside a network
    seen: list[torch.dtype] = []
    handle = inner.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    losses = {}
    for name in ("fp32", "bf16"):
        torch.manual_seed(1)
        with Precision(name, CPU).networks(vae):
            losses[name] = (objective.differentiable_loss(vae.model, vae.guide, x) / x.shape[0]).detach()
    handle.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert losses["bf16"].dtype == torch.float32  # likelihood, KL and sums stay fp32
    assert float(losses["bf16"]) == pytest.approx(float(losses["fp32"]), rel=1e-2)
    assert float(losses["bf16"]) != float(losses["fp32"])  # bf16 really ran
    with torch.no_grad():  # outside the context everything is fp32 again
        assert inner(torch.ones(1, inner.in_features)).dtype == torch.float32


@pytest.mark.parametrize("trainer_kind", ["svi", "adversarial"])
def test_a_bf16_training_epoch_trains_like_fp32(tmp_path: Path, trainer_kind: str) -> None:
    """One epoch (3 steps) in bf16 and fp32 from the same start: finite losses within 2% of each other."""
    results = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        run = tmp_path / precision
        run.mkdir()
        if trainer_kind == "svi":
            config = TrainConfig(dataset="binarized_digits", batch_size=512, epochs=1, precision=precision)
            dataset = load_dataset(config.dataset)
            model = build_vae(VAEConfig(latent_dim=4, hidden=(64,)), dataset.spec)
            trainer = SVITrainer(model, config, dataset, run, "vae", CPU)
        else:
            config = TrainConfig(dataset="digits", batch_size=512, epochs=1, precision=precision)
            dataset = load_dataset(config.dataset)
            model = build_gan(GANConfig(arch="mlp", hidden=(64,), latent_dim=4, val_samples=0), dataset.spec)
            trainer = AdversarialTrainer(model, config, dataset, run, "gan", CPU)
        results[precision] = trainer.train_epoch(1)
    for key, value in results["fp32"].items():
        assert torch.isfinite(torch.tensor(results["bf16"][key]))
        assert results["bf16"][key] == pytest.approx(value, rel=2e-2, abs=1e-2), key


def test_fp16_without_cuda_is_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(DGMError, match="fp16 needs a CUDA device"):
        Precision("fp16", CPU)
    code, _, err = cli(train_main, ["vae", "--precision", "fp16", "--device", "cpu", "--out", tmp_path / "run"], capsys)
    assert code == 2 and "fp16 needs a CUDA device" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
