"""benchmarks/peers.py at tiny sizes: every installed contender passes its check and is timed; a perturbed
weight makes the check fail; missing peers are named. No timing assertions."""
from __future__ import annotations

import re

import pytest
import torch

from benchmarks import peers as bench
from benchmarks.peer_flows import flow_evaluation, flow_step, new_flow, peer_copies, peer_loss, randomized
from benchmarks.peer_imports import PEERS, peer as importable
from benchmarks.peer_vae import importance_sampling, vae_step
from benchmarks.side_by_side import Comparison, check
from benchmarks.training_steps import seeded
from data.specs import DATASETS
from inference.training.config import TrainConfig

CPU = torch.device("cpu")
Q = bench.QUICK
INSTALLED = {name: importable(name) is not None for name in PEERS}  # as the benchmark decides


def test_quick_run_checks_and_times_every_row(capsys):
    status = bench.main(["--quick", "--device", "cpu", "--threads", "1"])
    out = capsys.readouterr().out
    assert status == 0 and "FAILED" not in out
    for row in bench.ROWS:
        assert f"{row}: ours (" in out
    assert "vae_step: plain" in out and "importance: plain" in out
    for name, installed in INSTALLED.items():
        if installed:
            assert re.search(rf": {name} \([\d,]+ parameters; .*\): check ok", out)
        else:
            assert "not installed: " in out and f"skipped {name} (not installed)" in out
    assert len(re.findall(r"^\| \d{4}-\d{2}-\d{2} \|", out, re.M)) == len(bench.ROWS)  # printed, not appended


def perturbed(comparison: Comparison, name: str) -> list[str]:
    """Checks after adding 0.05 to the last parameter (an output bias) of contender ``name``."""
    target = next(c for c in comparison.contenders if c.name == name)
    with torch.no_grad():
        list(target.module.parameters())[-1].add_(0.05)
    check(comparison)
    return [c.check for c in comparison.contenders]


def vae_rows(peers: dict) -> list[Comparison]:
    spec = DATASETS[Q.vae_dataset]
    x_all = bench.synthetic(2 * Q.batch_size, Q.vae_dataset, CPU)
    config = TrainConfig(batch_size=Q.batch_size)
    x = bench.synthetic(Q.is_images, Q.vae_dataset, CPU, seed=2)
    return [Comparison("step", "step", "-", vae_step(spec, Q.vae_hidden, Q.latent_dim, x_all, config, peers, CPU)),
            Comparison("is", "estimate", "-", importance_sampling(spec, Q.vae_hidden, Q.latent_dim, x, x[:2],
                                                                  Q.is_samples, peers, CPU))]


@pytest.mark.parametrize("row", [0, 1])
def test_a_perturbed_weight_fails_the_vae_checks(row):
    peers = {"pythae": pytest.importorskip("pythae")} if INSTALLED["pythae"] else {}
    for name in ["plain", *peers]:
        comparison = vae_rows(peers)[row]
        checks = perturbed(comparison, name)
        assert [c.name for c, result in zip(comparison.contenders, checks) if result.startswith("FAILED")] == [name]


FLOW_CASES = [(peer, arch) for peer in ("zuko", "nflows", "normflows") for arch in ("maf", "realnvp_mlp")]


def flow_sizes(arch: str) -> tuple[int, tuple[int, ...]]:
    """(layers, hidden) of the quick sizes for ``arch``."""
    return (Q.maf_layers, Q.maf_hidden) if arch == "maf" else (Q.realnvp_layers, Q.realnvp_hidden)


@pytest.mark.parametrize("peer, arch", FLOW_CASES)
def test_a_perturbed_weight_fails_the_flow_checks(peer, arch):
    module = pytest.importorskip(peer)
    x_all = bench.synthetic(Q.batch_size, Q.flow_dataset, CPU)

    def comparison() -> Comparison:
        contenders, failed = flow_step(DATASETS[Q.flow_dataset], arch, *flow_sizes(arch), x_all,
                                       TrainConfig(batch_size=Q.batch_size), {peer: module}, CPU)
        assert not failed
        return Comparison(arch, "step", "-", contenders)

    assert [c.name for c in check(comparison())] == ["ours", peer]
    assert perturbed(comparison(), peer)[1].startswith("FAILED")


@pytest.mark.parametrize("peer, arch", FLOW_CASES)
def test_our_map_is_swapped_in_for_the_check_only(peer, arch):
    """Within ``ours_maps`` the peer's loss changes (our log-scale map); after it, the stock loss is back."""
    module = pytest.importorskip(peer)
    spec = DATASETS[Q.flow_dataset]
    model = randomized(new_flow(spec, arch, *flow_sizes(arch), CPU), scale=0.2)  # log-scales where the maps differ
    (built,), failed = peer_copies(model, {peer: module})
    loss = seeded(peer_loss(built, spec.levels, model.config.logit_alpha),
                  bench.synthetic(Q.batch_size, Q.flow_dataset, CPU), 0)
    stock = loss()
    with built.ours_maps():
        swapped = loss()
    assert not failed and torch.isfinite(stock) and not torch.allclose(stock, swapped, rtol=1e-3)
    assert torch.equal(loss(), stock)


def test_the_evaluation_rows_check_density_and_samples():
    peers = {n: pytest.importorskip(n) for n in ["normflows"]}
    spec = DATASETS[Q.flow_dataset]
    y = bench.synthetic(4, Q.flow_dataset, CPU) + torch.rand(4, *spec.shape)
    density, sampling, failed = flow_evaluation(spec, Q.realnvp_layers, Q.realnvp_hidden, y, peers, CPU)
    assert not failed
    for contenders in (density, sampling):
        assert [c.name for c in check(Comparison("e", "batch", "-", contenders))] == ["ours", "normflows"]
    assert perturbed(Comparison("e", "batch", "-", density), "normflows")[1].startswith("FAILED")


def test_missing_peers_are_named_in_the_rows_that_use_them():
    assert bench.skipped_peers("maf_step", ["zuko", "pythae"]) == ["zuko (not installed)"]
    assert bench.skipped_peers("importance", ["zuko", "pythae"]) == ["pythae (not installed)"]
