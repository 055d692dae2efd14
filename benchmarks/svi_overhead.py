"""SVI overhead: training steps per second of our VAE through Pyro against a plain PyTorch loop.

Same networks (one VAE module per variant, all initialised from seed 0), same batches, same machine,
one process; the variants run interleaved in blocks so that load on the machine affects them alike.
Each variant is first checked for correctness: on the same noise (same seed) its loss must equal the
plain loss of its group and its gradients the plain gradients, to float32 tolerance; a variant that
fails is reported and not timed.

Group K = 1 (the trainer's setting; reference ``plain``):

- ``plain``: hand-written -ELBO per example: -sum_n [log Bern(x_n | f(z_n)) - KL_n] / B with
  z_n = mu_n + sigma_n * eps_n and the closed-form Gaussian KL; torch Adam
- ``ours``: what the trainer does: ``AnalyticKLTrace_ELBO.differentiable_loss / B`` + torch Adam
- ``pyro_svi``: ``pyro.infer.SVI`` with ``pyro.optim.Adam`` and ``pyro.module`` registration
- ``ours_compiled``: ``ours`` with ``torch.compile`` on the encoder and decoder networks
- ``plain_compiled``: ``plain`` with the same compiled networks (the ceiling of compiling)
- ``pyro_jit``: Pyro's ``JitTrace_ELBO`` (``torch.jit.trace`` of the whole model/guide; ``pyro.module``
  registration, which the JIT needs to see the weights as inputs) + torch Adam on its surrogate loss.
  Its KL is Trace_ELBO's Monte-Carlo log q(z|x) - log p(z) (the JIT has no analytic KL), so it is
  checked against ``plain`` with that KL (``plain_mc``); it is a different, noisier estimator.
  ``JitTrace_ELBO.differentiable_loss`` itself returns ``loss + (surrogate - surrogate.detach())``
  with ``loss`` not detached, which doubles every gradient (pyro-ppl 1.9.2; the check catches it:
  grad rel 1.0); we differentiate the surrogate of ``loss_and_surrogate_loss``, as its own
  ``loss_and_grads`` (the ``SVI.step`` path) does.

Group K = ``--particles`` (reference ``plain_k``: the plain loop drawing eps of shape (K, B, L) and
averaging the reconstruction term over the K draws):

- ``ours_vectorized``: ``AnalyticKLTrace_ELBO(num_particles=K, vectorize_particles=True)``
- ``ours_sequential``: the same with ``vectorize_particles=False`` (Pyro's Python loop over particles)

``python -m benchmarks.svi_overhead [--batch-size 128] [--blocks 10] [--steps 20] [--particles 8]
[--hidden 500 500] [--latent-dim 20] [--variants ...] [--device auto] [--threads 1] [--append]`` prints a
table (median steps/s over blocks, time per step relative to the group's plain variant, and the
correctness check) and, with ``--append``, adds one row per group to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import pyro
import pyro.poutine as poutine
import torch
import torch.nn.functional as F

from core.config import OneLineErrorParser
from benchmarks.results_rows import emit, print_table, results_row
from benchmarks.timing import add_device_arguments, setup_device, synchronize
from core.errors import DGMError, run_cli
from data.specs import DATASETS
from inference.objectives.elbo import AnalyticKLTrace_ELBO
from models.vae import VAE, VAEConfig

VARIANTS = ["plain", "ours", "pyro_svi", "ours_compiled", "plain_compiled", "pyro_jit",
            "plain_k", "ours_vectorized", "ours_sequential"]
#: the plain variant each variant is checked against and compared with
REFERENCE = {"plain": "plain", "ours": "plain", "pyro_svi": "plain", "ours_compiled": "plain",
             "plain_compiled": "plain", "pyro_jit": "plain_mc",
             "plain_k": "plain_k", "ours_vectorized": "plain_k", "ours_sequential": "plain_k"}
RTOL = 1e-4  # float32: sums over 784 x B terms agree to ~1e-6 relative; 1e-4 leaves room, catches real bugs


def plain_loss(vae: VAE, x: torch.Tensor, particles: int = 1, kl: str = "analytic") -> torch.Tensor:
    """-ELBO per example, written out in torch.

    loc, scale = enc(x) (B, L); eps ~ N(0, I) of shape (B, L) (K = 1) or (K, B, L); z = loc + scale * eps;
    recon = sum log Bern(x | dec(z)) / K; KL = sum_l [mu^2 + sigma^2 - 1 - 2 log sigma] / 2 (analytic) or
    (log q(z|x) - log N(z; 0, I)) / K (``kl="mc"``, Trace_ELBO's estimator); loss = -(recon - KL) / B.
    """
    loc, scale = vae.encode(x)
    eps = torch.randn_like(loc) if particles == 1 else torch.randn((particles,) + loc.shape, device=loc.device)
    z = loc + scale * eps
    logits = vae.decoder(z)
    target = x if particles == 1 else x.expand((particles,) + x.shape)
    recon = -F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / particles
    if kl == "analytic":
        kl_term = 0.5 * (loc ** 2 + scale ** 2 - 1 - 2 * torch.log(scale)).sum()
    else:
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum()
        log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
        kl_term = (log_q - log_p) / particles
    return -(recon - kl_term) / x.shape[0]


@dataclass
class Variant:
    """One way of taking a training step; ``loss(x)`` is the per-example loss it differentiates."""

    name: str
    vae: VAE
    loss: Callable[[torch.Tensor], torch.Tensor]
    step: Callable[[torch.Tensor], None] = field(default=None)  # type: ignore[assignment]
    check: str = ""

    def __post_init__(self) -> None:
        if self.step is None:
            optimizer = torch.optim.Adam(self.vae.parameters(), lr=1e-3)

            def step(x: torch.Tensor) -> None:
                optimizer.zero_grad(set_to_none=True)
                self.loss(x).backward()
                optimizer.step()

            self.step = step


def new_vae(hidden: tuple[int, ...], latent_dim: int, device: torch.device) -> VAE:
    """The 784-hidden-latent MLP VAE with Bernoulli pixels, initialised from seed 0 (same weights for all)."""
    torch.manual_seed(0)
    return VAE(VAEConfig(latent_dim=latent_dim, hidden=hidden), DATASETS["binarized_mnist"]).to(device)


def scaled(vae: VAE, name: str) -> tuple[Callable, Callable]:
    """Model and guide registered with ``pyro.module`` and scaled by 1/B (what SVI users write)."""

    def model(x: torch.Tensor) -> None:
        pyro.module(name, vae)
        with poutine.scale(scale=1.0 / x.shape[0]):
            vae.model(x)

    def guide(x: torch.Tensor) -> None:
        pyro.module(name, vae)
        with poutine.scale(scale=1.0 / x.shape[0]):
            vae.guide(x)

    return model, guide


def compile_networks(vae: VAE) -> VAE:
    """Replace the encoder and decoder by their ``torch.compile`` versions (the Pyro code stays eager)."""
    vae.encoder = torch.compile(vae.encoder)
    vae.decoder = torch.compile(vae.decoder)
    return vae


def build_variant(name: str, hidden: tuple[int, ...], latent_dim: int, particles: int,
                  device: torch.device) -> Variant:
    vae = new_vae(hidden, latent_dim, device)
    if name == "plain":
        return Variant(name, vae, lambda x: plain_loss(vae, x))
    if name == "plain_mc":
        return Variant(name, vae, lambda x: plain_loss(vae, x, kl="mc"))
    if name == "plain_k":
        return Variant(name, vae, lambda x: plain_loss(vae, x, particles))
    if name == "plain_compiled":
        compile_networks(vae)
        return Variant(name, vae, lambda x: plain_loss(vae, x))
    if name in ("ours", "ours_compiled", "ours_vectorized", "ours_sequential"):
        if name == "ours_compiled":
            compile_networks(vae)
        k = particles if name in ("ours_vectorized", "ours_sequential") else 1
        objective = AnalyticKLTrace_ELBO(num_particles=k, vectorize_particles=name == "ours_vectorized",
                                         max_plate_nesting=1)
        return Variant(name, vae, lambda x: objective.differentiable_loss(vae.model, vae.guide, x) / x.shape[0])
    if name == "pyro_svi":
        model, guide = scaled(vae, name)
        objective = AnalyticKLTrace_ELBO()
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=objective)
        return Variant(name, vae, lambda x: objective.differentiable_loss(model, guide, x), step=lambda x: svi.step(x))
    if name == "pyro_jit":
        model, guide = scaled(vae, name)
        objective = pyro.infer.JitTrace_ELBO(ignore_jit_warnings=True)
        # the surrogate (value = -ELBO here: every site is reparameterised), not differentiable_loss: see above
        return Variant(name, vae, lambda x: objective.loss_and_surrogate_loss(model, guide, x)[1])
    raise DGMError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def loss_and_grads(variant: Variant, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(seed)
    loss = variant.loss(x)
    params = [p for _, p in sorted(variant.vae.named_parameters(), key=lambda item: item[0].replace("_orig_mod.", ""))]
    return loss.detach(), list(torch.autograd.grad(loss, params))


def check(variant: Variant, reference: Variant, x: torch.Tensor, seed: int = 123) -> str:
    """Same noise for both: "ok (loss rel a, grad rel b)" or "FAILED (...)"; also stored in ``variant.check``.

    One untimed call first: JIT tracing and compilation run the function (and draw noise) on first use."""
    variant.loss(x)
    loss, grads = loss_and_grads(variant, x, seed)
    ref_loss, ref_grads = loss_and_grads(reference, x, seed)
    dloss = float((loss - ref_loss).abs() / ref_loss.abs().clamp_min(1e-12))
    dgrad = max(float((g - r).abs().max() / r.abs().max().clamp_min(1e-12)) for g, r in zip(grads, ref_grads))
    ok = dloss < RTOL and dgrad < RTOL * 10
    variant.check = f"{'ok' if ok else 'FAILED'} (loss rel {dloss:.1e}, grad rel {dgrad:.1e})"
    return variant.check


def measure(variants: list[Variant], x_all: torch.Tensor, batch_size: int, blocks: int, steps_per_block: int,
            device: torch.device, warmup: int = 3) -> dict[str, list[float]]:
    """Steps per second of each variant in each block, blocks interleaved (same batches for every variant)."""
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    gen = torch.Generator().manual_seed(0)
    for variant in variants:  # warm-up: allocations, compilation, JIT tracing
        for _ in range(warmup):
            variant.step(x_all[torch.randint(0, x_all.shape[0], (batch_size,), generator=gen)])
    for _ in range(blocks):
        batches = [x_all[torch.randint(0, x_all.shape[0], (batch_size,), generator=gen)]
                   for _ in range(steps_per_block)]
        for variant in variants:
            synchronize(device)
            start = time.perf_counter()
            for x in batches:
                variant.step(x)
            synchronize(device)
            rates[variant.name].append(steps_per_block / (time.perf_counter() - start))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.svi_overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    parser.add_argument("--blocks", type=int, default=10, help="interleaved timed blocks per variant (default: 10)")
    parser.add_argument("--steps", type=int, default=20, help="steps per block")
    parser.add_argument("--particles", type=int, default=8, help="K of the particle group")
    parser.add_argument("--hidden", type=int, nargs="+", default=[500, 500], help="hidden layer widths of the VAE (default: 500 500)")
    parser.add_argument("--latent-dim", type=int, default=20, help="latent dimensions of the VAE (default: 20)")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS,
                        help=f"training-step variants to time (default: all): {', '.join(VARIANTS)}")
    parser.add_argument("--append", action="store_true", help="append one row per group to benchmarks/RESULTS.md")
    add_device_arguments(parser, threads=None)
    args = parser.parse_args(argv)
    if min(args.batch_size, args.blocks, args.steps, args.particles) < 1:
        raise DGMError("--batch-size, --blocks, --steps and --particles must be at least 1")
    device = setup_device(args)
    pyro.enable_validation(False)
    pyro.clear_param_store()
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message=".*torch.jit.trace.* is deprecated")  # pyro_jit measures it anyway
    hidden = tuple(args.hidden)
    x_all = torch.bernoulli(torch.full((4096, 1, 28, 28), 0.13), generator=torch.Generator().manual_seed(1)).to(device)
    check_x = x_all[:args.batch_size]
    references: dict[str, Variant] = {}
    timed: list[Variant] = []
    print(f"VAE 784-{'-'.join(map(str, hidden))}-{args.latent_dim}, batch {args.batch_size}, K = {args.particles} "
          f"in the particle group; measured on {device.type} ({torch.get_num_threads()} torch threads)", flush=True)
    for name in args.variants:
        ref_name = REFERENCE[name]
        if ref_name not in references:
            references[ref_name] = build_variant(ref_name, hidden, args.latent_dim, args.particles, device)
        try:
            variant = build_variant(name, hidden, args.latent_dim, args.particles, device)
            result = check(variant, references[ref_name], check_x)
        except Exception as exc:  # a variant Pyro or torch cannot run here is reported, not fatal
            print(f"{name}: cannot run: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", flush=True)
            continue
        print(f"{name}: correctness against {ref_name}: {result}", flush=True)
        if result.startswith("ok"):
            timed.append(variant)
    rates = measure(timed, x_all, args.batch_size, args.blocks, args.steps, device)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    groups = {"K = 1": [v for v in timed if REFERENCE[v.name] != "plain_k"],
              f"K = {args.particles}": [v for v in timed if REFERENCE[v.name] == "plain_k"]}
    table, rows = [], []
    for group, members in groups.items():
        base = "plain" if group == "K = 1" else "plain_k"
        if not members:
            continue
        parts = []
        for v in members:
            ratio = medians[base] / medians[v.name] if base in medians else float("nan")
            low, high = min(rates[v.name]), max(rates[v.name])
            table.append([group, v.name, f"{medians[v.name]:.1f}", f"{low:.1f}..{high:.1f}", f"{ratio:.3f}x", v.check])
            parts.append(f"{v.name} {medians[v.name]:.1f} steps/s ({ratio:.3f}x {base})")
        checked = f"each checked against {base}" + (" (pyro_jit against plain with Monte-Carlo KL)"
                                                   if any(v.name == "pyro_jit" for v in members) else "")
        rows.append(results_row(
            device, "synthetic 28x28 binary (Bernoulli(0.13)), 4096 images",
            f"VAE 784-{'-'.join(map(str, hidden))}-{args.latent_dim} training step, batch {args.batch_size}, {group}",
            f"steps/s, median of {args.blocks} interleaved blocks of {args.steps} steps; loss and gradients {checked} "
            f"on the same noise (rel. tol. {RTOL:g})", "; ".join(parts)))
    print_table(["group", "variant", "steps/s", "min..max", "time vs plain", "correctness (same noise)"], table)
    return emit(rows, args.append)


if __name__ == "__main__":
    run_cli(main)
