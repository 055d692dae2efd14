"""torch.distributed training: 2 CPU processes (gloo) with half the global batch each take the same
steps as 1 process with the whole batch (both through the torchrun code path), to float tolerance.

The spawned runs cover the SVI trainer through the command line (a VAE with 2 vectorised particles,
trained 1 epoch and resumed to 2 on 2 processes, straight on 1), a VAE with an IAF posterior
(TransformedDistribution noise), a uniformly dequantized flow (Uniform noise) and a WGAN-GP MLP GAN
with 2 discriminator steps per generator step (z and the penalty's mixing weights). Global batch 512
on 1297 digits: 3 steps an epoch, the last one (273 examples) split unevenly, 137 / 136.
"""
from __future__ import annotations

import csv
import json
import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.multiprocessing as mp

from core.errors import DGMError
from inference.training.distributed import DistributedContext, GlobalNoise

BATCH = 512
VAE_CLI = ["vae", "--dataset", "binarized_digits", "--hidden", "32", "--latent-dim", "3", "--num-particles", "2",
           "--batch-size", str(BATCH), "--device", "cpu", "--seed", "3"]
COMPARED = ["vae_cli", "vae_iaf", "flow_uniform", "gan_wgan_gp"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trainer_runs(rank: int, world: int, out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Trainer-level runs (no figures, no classifier): final parameters of each model."""
    from core.seeding import seed_everything
    from data import load_dataset
    from inference.training.adversarial_trainer import AdversarialTrainer
    from inference.training.config import TrainConfig
    from inference.training.svi_trainer import SVITrainer
    from models.flows.density import FlowConfig, build_flow
    from models.gan.model import GANConfig, build_gan
    from models.vae import VAEConfig, build_vae

    context = DistributedContext(rank, world, rank, True)
    cpu = torch.device("cpu")
    states = {}
    for name, dataset_name, build, config in [
        ("vae_iaf", "binarized_digits", build_vae,
         VAEConfig(latent_dim=3, hidden=(16,), posterior_flow="iaf", flow_length=1, flow_context=4, flow_hidden=(8,))),
        ("flow_uniform", "digits", build_flow, FlowConfig(arch="realnvp_mlp", num_layers=2, hidden=(16,))),
        ("gan_wgan_gp", "digits", build_gan,
         GANConfig(arch="mlp", hidden=(16,), latent_dim=3, d_dropout=0.0, loss="wgan_gp", d_steps=2, val_samples=0)),
    ]:
        dataset = load_dataset(dataset_name)
        train = TrainConfig(dataset=dataset_name, batch_size=BATCH, epochs=1, device="cpu", seed=1)
        seed_everything(train.seed)
        model = build(config, dataset.spec)
        run_dir = out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        if name.startswith("gan"):
            trainer = AdversarialTrainer(model, train, dataset, run_dir, "gan", cpu, context)
        else:
            trainer = SVITrainer(model, train, dataset, run_dir, name, cpu, context)
        trainer.validate = lambda: {}  # validation is rank 0's business and not what is compared here
        trainer.objective_of = lambda row: float(row["epoch"])
        trainer.fit()
        states[name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        # the last step's gradients (Adam's steps hardly see a wrong overall gradient scale; these do)
        states[name].update({f"grad:{k}": p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    return states


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One process of a torchrun-like launch: the environment torchrun sets, then the runs."""
    import torch.distributed as torch_dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), DGM_OFFLINE="1")
    torch.set_num_threads(1)
    # one process group for every run (the command line joins an existing group instead of starting its own)
    torch_dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=120))
    from core.errors import run_cli
    from inference.train import main

    root = Path(out)

    def cli(argv: list[str]) -> None:
        try:
            run_cli(main, argv)
        except SystemExit as exit_info:
            assert not exit_info.code, f"rank {rank}: {argv} exited with {exit_info.code}"

    run = root / "vae_cli"
    if world == 2:  # 1 epoch, then resume to 2
        cli([*VAE_CLI, "--epochs", "1", "--out", str(run)])
        cli(["vae", "--resume", "--epochs", "2", "--device", "cpu", "--out", str(run)])
    else:
        cli([*VAE_CLI, "--epochs", "2", "--out", str(run)])
    if world == 2:  # a global batch the processes cannot share evenly: one-line error on every rank
        try:
            run_cli(main, [*VAE_CLI[:-6], "--batch-size", "101", "--device", "cpu", "--out", str(root / "odd")])
        except SystemExit as exit_info:
            (root / f"odd_exit_rank{rank}").write_text(str(exit_info.code))
    states = _trainer_runs(rank, world, root)
    torch_dist.barrier()
    if rank == 0:
        states["vae_cli"] = torch.load(run / "checkpoint.pt", weights_only=True)["model_state"]
        torch.save(states, root / "states.pt")
    torch_dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Launch the 2-process and the 1-process runs side by side; their output folders by world size."""
    folders = {world: tmp_path_factory.mktemp(f"world{world}") for world in (2, 1)}
    contexts = {world: mp.start_processes(_worker, args=(world, _free_port(), str(folders[world])), nprocs=world,
                                          join=False, start_method="spawn") for world in folders}
    deadline = time.monotonic() + 240
    for world, context in contexts.items():
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.terminate()
                pytest.fail(f"the {world}-process run did not finish in time")
    return folders


@pytest.mark.parametrize("name", COMPARED)
def test_two_processes_match_one_process(runs: dict[int, Path], name: str) -> None:
    """Same parameters after training and the same last-step gradients (float32, atol 1e-5): the distributed
    sampler, the loss scaling and the per-example noise make the number of processes invisible."""
    one = torch.load(runs[1] / "states.pt", weights_only=True)[name]
    two = torch.load(runs[2] / "states.pt", weights_only=True)[name]
    assert one.keys() == two.keys()
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, atol=1e-5, rtol=1e-5, msg=f"{name}: {key}")
    assert name == "vae_cli" or any(key.startswith("grad:") for key in one)


def test_rank_zero_writes_one_run_directory_and_resume_continues(runs: dict[int, Path]) -> None:
    """metrics.csv has one row per epoch (not one per process), the same train_loss on 1 and 2 processes,
    and config.json records the world size of the run and of its resume."""
    def rows(folder: Path) -> list[dict[str, str]]:
        with (folder / "vae_cli" / "metrics.csv").open() as handle:
            return list(csv.DictReader(handle))

    two, one = rows(runs[2]), rows(runs[1])
    assert [r["epoch"] for r in two] == ["1", "2"] and [r["step"] for r in two] == ["3", "6"]
    for a, b in zip(two, one):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-6)
        assert float(a["val_elbo"]) == pytest.approx(float(b["val_elbo"]), rel=1e-5)
    config = json.loads((runs[2] / "vae_cli" / "config.json").read_text())
    assert config["distributed"]["world_size"] == 2 and config["resumes"][0]["distributed"]["world_size"] == 2
    assert (runs[2] / "vae_cli" / "eval_test.json").is_file()


def test_batch_not_divisible_by_the_processes_is_refused(runs: dict[int, Path]) -> None:
    """--batch-size 101 on 2 processes: exit 2 on both ranks, nothing written; fine on 1 process."""
    assert [(runs[2] / f"odd_exit_rank{r}").read_text() for r in (0, 1)] == ["2", "2"]
    assert not (runs[2] / "odd").exists()
    with pytest.raises(DGMError, match="divisible by the 2 processes"):
        DistributedContext(0, 2, 0, True).check_batch_size(101)
    DistributedContext(0, 1, 0, True).check_batch_size(101)


# ---- the per-example noise, without processes -----------------------------------------------
def _guide(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        loc = x.sum(-1, keepdim=True).expand(-1, 3)
        pyro.sample("z", dist.Normal(loc, torch.ones_like(loc)).to_event(1))
        pyro.sample("u", dist.Uniform(torch.zeros_like(x), torch.ones_like(x) * 2).to_event(1))


def _draws(rank: int, world: int, x: torch.Tensor) -> dict[str, torch.Tensor]:
    context = DistributedContext(rank, world, rank, True)
    shard = context.shard(torch.arange(x.shape[0]))
    with pyro.poutine.trace() as tracer, GlobalNoise(shard, ("test", 0, 7)):
        with pyro.plate("particles", 2, dim=-2):
            _guide(x[shard.index])
    return {name: site["value"] for name, site in tracer.trace.nodes.items() if site["type"] == "sample"}


def test_each_example_gets_the_same_noise_whatever_the_number_of_processes() -> None:
    """Rows of 3 processes (5 examples: 2, 2, 1) put together are the 1-process draw, particles included."""
    x = torch.arange(10.0).reshape(5, 2)
    whole = _draws(0, 1, x)
    for name in ("z", "u"):
        parts = torch.cat([_draws(r, 3, x)[name] for r in range(3)], dim=1)
        assert whole[name].shape == (2, 5, 3 if name == "z" else 2)
        torch.testing.assert_close(parts, whole[name], rtol=0, atol=0)
    assert (whole["u"] >= 0).all() and (whole["u"] < 2).all()
    assert not torch.equal(whole["z"][0], whole["z"][1])  # particles differ


def test_unsupported_latent_sites_are_refused_by_name() -> None:
    shard = DistributedContext(0, 2, 0, True).shard(torch.arange(4))

    def discrete(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(0.5 * torch.ones(x.shape[0])))

    def global_site(x: torch.Tensor) -> None:
        pyro.sample("w", dist.Normal(0.0, 1.0))

    with GlobalNoise(shard, ("t",)), pytest.raises(DGMError, match="'c' has a Bernoulli distribution"):
        discrete(torch.zeros(2, 1))
    with GlobalNoise(shard, ("t",)), pytest.raises(DGMError, match="'w' is outside pyro.plate"):
        global_site(torch.zeros(2, 1))
