"""SVI overhead: training steps per second of our VAE through Pyro against a plain PyTorch loop.

Same networks (one VAE module), same batch, same machine, one process; the variants run
interleaved in blocks so that load on the machine affects them alike. Variants:

- ``plain``: hand-written loss  -sum_n [log Bernoulli(x_n | f(z_n)) - KL_n] / B, torch Adam
- ``ours``: what the trainer does: ``AnalyticKLTrace_ELBO.differentiable_loss / B`` + torch Adam
- ``pyro_svi``: ``pyro.infer.SVI`` with ``pyro.optim.Adam`` and ``pyro.module`` registration

``python -m benchmarks.svi_overhead [--batch-size 128] [--blocks 10] [--steps 20] [--device cpu]
[--append]`` prints a table (median steps/s and the ratio to plain) and, with ``--append``, adds a
row to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import pyro
import pyro.poutine as poutine
import torch
import torch.nn.functional as F

from core.run_dir import cpu_model, git_commit
from data.specs import DATASETS
from inference.elbo import AnalyticKLTrace_ELBO
from models.vae import VAE, VAEConfig


def plain_loss(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """-ELBO per example, written out: BCE with logits + closed-form Gaussian KL, reparameterised z."""
    loc, scale = vae.encode(x)
    z = loc + scale * torch.randn_like(loc)
    logits = vae.decoder(z)
    recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = 0.5 * (loc ** 2 + scale ** 2 - 1 - 2 * torch.log(scale)).sum()
    return -(recon - kl) / x.shape[0]


def make_steps(batch_size: int, device: torch.device) -> dict[str, Callable[[torch.Tensor], None]]:
    spec = DATASETS["binarized_mnist"]
    config = VAEConfig(latent_dim=20, hidden=(500, 500))
    steps: dict[str, Callable[[torch.Tensor], None]] = {}

    torch.manual_seed(0)
    plain = VAE(config, spec).to(device)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3)

    def plain_step(x: torch.Tensor) -> None:
        plain_opt.zero_grad(set_to_none=True)
        plain_loss(plain, x).backward()
        plain_opt.step()

    torch.manual_seed(0)
    ours = VAE(config, spec).to(device)
    ours_opt = torch.optim.Adam(ours.parameters(), lr=1e-3)
    objective = ours.objective()

    def ours_step(x: torch.Tensor) -> None:
        ours_opt.zero_grad(set_to_none=True)
        (objective.differentiable_loss(ours.model, ours.guide, x) / x.shape[0]).backward()
        ours_opt.step()

    torch.manual_seed(0)
    svi_vae = VAE(config, spec).to(device)

    def model(x: torch.Tensor) -> None:
        pyro.module("vae", svi_vae)
        with poutine.scale(scale=1.0 / x.shape[0]):
            svi_vae.model(x)

    def guide(x: torch.Tensor) -> None:
        pyro.module("vae", svi_vae)
        with poutine.scale(scale=1.0 / x.shape[0]):
            svi_vae.guide(x)

    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=AnalyticKLTrace_ELBO())
    steps.update(plain=plain_step, ours=ours_step, pyro_svi=lambda x: svi.step(x))
    return steps


def measure(steps: dict[str, Callable[[torch.Tensor], None]], x_all: torch.Tensor, batch_size: int,
            blocks: int, steps_per_block: int, device: torch.device) -> dict[str, float]:
    """Median over blocks of steps per second for each variant, blocks interleaved."""
    rates: dict[str, list[float]] = {name: [] for name in steps}
    gen = torch.Generator().manual_seed(0)
    for name, step in steps.items():  # warm-up
        for _ in range(3):
            step(x_all[torch.randint(0, x_all.shape[0], (batch_size,), generator=gen)])
    for _ in range(blocks):
        for name, step in steps.items():
            batches = [x_all[torch.randint(0, x_all.shape[0], (batch_size,), generator=gen)]
                       for _ in range(steps_per_block)]
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for x in batches:
                step(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates[name].append(steps_per_block / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--append", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args = parser.parse_args()
    device = torch.device(args.device)
    pyro.enable_validation(False)
    x_all = torch.bernoulli(torch.full((4096, 1, 28, 28), 0.13), generator=torch.Generator().manual_seed(1)).to(device)
    rates = measure(make_steps(args.batch_size, device), x_all, args.batch_size, args.blocks, args.steps, device)
    print(f"{'variant':>10s}  {'steps/s':>8s}  {'time vs plain':>13s}")
    for name, rate in rates.items():
        print(f"{name:>10s}  {rate:8.1f}  {rates['plain'] / rate:13.3f}x")
    if args.append:
        hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            f"{cpu_model()}, {torch.get_num_threads()} threads"
        command = (f"python -m benchmarks.svi_overhead --batch-size {args.batch_size} --blocks {args.blocks} "
                   f"--steps {args.steps} --device {args.device} --append")
        result = ", ".join(f"{n} {r:.1f} steps/s ({rates['plain'] / r:.3f}x plain)" for n, r in rates.items())
        row = (f"| {time.strftime('%Y-%m-%d')} | {git_commit()[:7]} | {hardware} | `{command}` | synthetic "
               f"28x28 binary | VAE 784-500-500-20 training step | — | {result} |\n")
        with (Path(__file__).parent / "RESULTS.md").open("a") as handle:
            handle.write(row)


if __name__ == "__main__":
    main()
