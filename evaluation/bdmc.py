"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015): AIS's error, bounded on simulated data.

On data simulated from the model itself, (z*, x) ~ p(z) p(x | z), z* is an exact sample of the
posterior p(z | x). So the same annealing path can be run both ways (``evaluation.ais``)::

    forward:  z_0 ~ p(z), betas 0 -> 1          E[w_fwd] = p(x)        lower = log mean_k w_fwd,k
    reverse:  z_T = z*,   betas 1 -> 0          E[w_rev] = 1 / p(x)    upper = -log mean_k w_rev,k

and by Jensen E[lower] <= log p(x) <= E[upper]: the gap upper - lower (nats per example, and in
bits/dim of the data) bounds the error of forward AIS with these settings, on data like the model's
own samples (Wu et al. 2017 use it to vouch for decoder-model likelihoods).

Both directions use the same K chains per example and the same HMC settings; the reverse run
replays the forward run's step-size schedule backwards (the forward pilots' schedule, independent
of z*, so that the reverse kernels leave each tempered posterior invariant exactly; a schedule
adapted on the reverse chains themselves would depend on z*).

Simulation: one trace of ``poutine.uncondition(model)`` on template inputs ``x_like`` (only their
number, shape and device matter) samples every site; both runs then condition the model on the
simulated observed values. Latent sites not on the real line (dequantization noise u) are held at
their simulated values in both runs, so BDMC sandwiches log p(x_obs | u) of the observed site's
value (a continuous density, e.g. of y = (x + u) / levels): the annealing error in z. It does not
include the extra spread from drawing u from its prior in the evaluation of real data, which only
loosens that lower bound further (``evaluation.ais``).

``python -m evaluation.bdmc RUN_DIR -n 100 --ais-steps S --chains K --ais-schedule sigmoid --seed 0``
writes ``bdmc.json`` into the run directory. The AIS options are those of every command
(``evaluation.ais.add_ais_arguments``: ``--ais-steps --ais-schedule --ais-leapfrog --ais-step-size
--ais-target-accept --ais-adapt-rate --ais-pilot-chains``; the older ``--schedule``, ``--leapfrog``,
``--step-size``, ``--target-accept``, ``--pilot-chains`` still work).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import pyro.poutine as poutine
import torch

from core.config import OneLineErrorParser
from core.device import THREADS_HELP, resolve_device, set_threads
from core.errors import DGMError, run_cli
from core.run_lock import RunLock
from core.run_dir import SCHEMA_VERSION, provenance, write_json
from core.seeding import seed_everything
from evaluation.ais import (
    AIS_JOINT_FIX,
    AISOptions,
    AnnealingTarget,
    _is_real,
    add_ais_arguments,
    ais_options,
    anneal,
    check_model,
    default_chunk_size,
    forward_chains,
    schedule_betas,
)
from evaluation.diagnostics import standard_error
from evaluation.sample_passes import check_chunk_size, check_num_samples, log_mean_exp
from core.units import bits_per_dim
from inference.objectives.trace_checks import ExampleUnit, check_model_trace, scored_sites
from inference.training.load_run import load_run


@dataclass
class Simulation:
    """Data simulated from the model: per example (n, ...), the observed sites' values, the annealed
    latents' exact posterior draws z* and the held (non-real) latents' values."""

    observed: dict[str, torch.Tensor]
    latent: dict[str, torch.Tensor]
    held: dict[str, torch.Tensor]

    def rows(self, rows: slice) -> "Simulation":
        def cut(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {name: v[rows] for name, v in values.items()}

        return Simulation(cut(self.observed), cut(self.latent), cut(self.held))


@torch.no_grad()
def simulate(model: Callable, x_like: torch.Tensor) -> Simulation:
    """(z*, x) ~ p(z) p(x | z) for ``x_like.shape[0]`` examples: one trace of the unconditioned story."""
    trace = poutine.trace(poutine.uncondition(model)).get_trace(x_like)
    observed, latent, held = {}, {}, {}
    for name, site in scored_sites(trace):
        if site["infer"].get("was_observed", False):
            observed[name] = site["value"]
        elif _is_real(site["fn"].support) and site["value"].is_floating_point():
            latent[name] = site["value"]
        else:
            held[name] = site["value"]
    if not observed:
        raise DGMError("the model has no observed site: nothing to simulate")
    check_model_trace(poutine.trace(poutine.condition(model, data=observed)).get_trace(x_like), ExampleUnit(),
                      joint_fix=AIS_JOINT_FIX)
    return Simulation(observed, latent, held)


@dataclass
class BDMCResult:
    """Per example (n,) float64: lower and upper bounds on log p(x_sim); chains' log-weights (n, K)."""

    lower: torch.Tensor
    upper: torch.Tensor
    forward_log_weights: torch.Tensor
    reverse_log_weights: torch.Tensor
    held_sites: list[str]

    @property
    def gap(self) -> torch.Tensor:
        return self.upper - self.lower


def bidirectional_monte_carlo(model: Callable, x_like: torch.Tensor, num_chains: int = 16,
                              options: AISOptions | None = None, *, chunk_size: int | None = None,
                              pilot_chains: int | None = None, simulation: Simulation | None = None) -> BDMCResult:
    """Forward and reverse AIS with ``num_chains`` chains each on data simulated from ``model`` (module docstring).

    ``x_like`` (n, ...): template inputs (their count, shape and device); ``simulation``: data simulated
    earlier (default: :func:`simulate`); ``pilot_chains`` overrides ``options.pilot_chains``. Returns bounds
    in nats per example, float64 on the CPU."""
    options = options or AISOptions()
    if pilot_chains is not None:
        options = replace(options, pilot_chains=pilot_chains)
    options.validate()
    check_num_samples(num_chains)
    check_chunk_size(chunk_size)
    check_model(model, x_like)
    pilots = options.pilots
    sim = simulation or simulate(model, x_like)
    betas = schedule_betas(options.num_steps, options.schedule)
    size = chunk_size or default_chunk_size(x_like, num_chains + pilots)
    forward, reverse = [], []
    for start in range(0, x_like.shape[0], size):
        rows = slice(start, min(start + size, x_like.shape[0]))
        part = sim.rows(rows)
        xc = x_like[rows]
        fwd = AnnealingTarget(model, xc, num_chains + pilots, condition=part.observed, held=part.held)
        log_w_fwd, _, step_sizes = forward_chains(fwd, num_chains, options, pilots)
        rev = AnnealingTarget(model, xc, num_chains, condition=part.observed, held=part.held)
        result = anneal(rev, rev.flatten(part.latent), betas.flip(0), options,
                        step_sizes=step_sizes.flip(-1) if pilots else None)
        forward.append(log_w_fwd.cpu())
        reverse.append(result.log_weights.view(xc.shape[0], num_chains).cpu())
    log_w_fwd, log_w_rev = torch.cat(forward), torch.cat(reverse)
    lower, upper = log_mean_exp(log_w_fwd), -log_mean_exp(log_w_rev)
    if not (torch.isfinite(lower).all() and torch.isfinite(upper).all()):
        raise DGMError("non-finite BDMC bounds: the model is numerically broken on its own samples")
    return BDMCResult(lower, upper, log_w_fwd, log_w_rev, sorted(sim.held))


def summary(result: BDMCResult, dim: int) -> dict[str, Any]:
    """Means and standard errors over examples of the bounds and the gap (nats), gap in bits/dim too."""
    def stats(values: torch.Tensor) -> dict[str, float]:
        return {"mean": float(values.mean()), "se": standard_error(values)}

    gap = stats(result.gap)
    gap["bpd"] = bits_per_dim(gap["mean"], dim)
    gap["bpd_se"] = bits_per_dim(gap["se"], dim)
    gap["max"] = float(result.gap.max())
    return {"lower": stats(result.lower), "upper": stats(result.upper), "gap": gap,
            "bounds": "log p(observed | " + ", ".join(result.held_sites) + ")" if result.held_sites else "log p(x)",
            "held_sites": result.held_sites}


def bdmc_run(run: Any, n: int, num_chains: int, options: AISOptions, *, split: str = "test", seed: int = 0,
             pilot_chains: int | None = None, chunk_size: int | None = None, device: torch.device | None = None,
             log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """BDMC on ``n`` examples simulated from a loaded run's model; writes and returns ``bdmc.json``
    (``pilot_chains`` overrides ``options.pilot_chains``)."""
    with RunLock(run.run_dir, "running BDMC"):  # one writer of the run's files; refused before any work
        if pilot_chains is not None:
            options = replace(options, pilot_chains=pilot_chains)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DGMError(f"-n must be at least 1, got {n}")
        device = device or torch.device("cpu")
        x_like = run.dataset.split(split)[:n].to(device)
        if x_like.shape[0] < n:
            raise DGMError(f"-n {n} exceeds the {x_like.shape[0]} examples of the {split} split used as templates")
        run.model.to(device)
        seed_everything(seed)
        start = time.perf_counter()
        result = bidirectional_monte_carlo(run.model.model, x_like, num_chains, options, chunk_size=chunk_size)
        seconds = time.perf_counter() - start
        out = {"schema_version": SCHEMA_VERSION, "run": str(run.run_dir), "model": run.config["model"],
               "dataset": run.config["dataset"], "checkpoint_epoch": run.epoch, "n": n, "chains": num_chains,
               "pilot_chains": options.pilot_chains, "seed": seed, "options": options.as_dict(),
               **summary(result, run.dataset.spec.dim), "seconds": seconds, "provenance": provenance(device)}
        write_json(run.run_dir / "bdmc.json", out)
        if log is not None:
            log(f"BDMC on {n} simulated examples, {num_chains} chains, {options.num_steps} {options.schedule} steps: "
                f"lower {out['lower']['mean']:.3f} ± {out['lower']['se']:.3f}, upper {out['upper']['mean']:.3f} ± "
                f"{out['upper']['se']:.3f}, gap {out['gap']['mean']:.3f} ± {out['gap']['se']:.3f} nats "
                f"({out['gap']['bpd']:.5f} bits/dim), {seconds:.1f}s")
        return out


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every AIS command on a run directory shares: chunking, seed, device, checkpoint, threads."""
    parser.add_argument("--chunk-size", type=int, default=None, help="examples per chunk (default: automatic)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the AIS chains and their data (default: 0)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto uses a GPU when there is one (default: auto)")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"],
                        help="best.pt (best validation objective) or checkpoint.pt (the last epoch) (default: best)")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)


def add_chains_argument(parser: argparse.ArgumentParser) -> None:
    """``--chains K``: the AIS chains per example of the BDMC and GAN-likelihood commands."""
    parser.add_argument("--chains", type=int, default=16, metavar="K", help="AIS chains per example (default: 16)")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.bdmc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run directory written by inference.train")
    parser.add_argument("-n", type=int, default=100, help="examples to simulate (default: 100)")
    add_chains_argument(parser)
    add_ais_arguments(parser)
    parser.add_argument("--split", default="test", choices=["train", "val", "test"],
                        help="split whose first n examples serve as input templates (values unused)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    options = ais_options(args)
    check_num_samples(args.chains)
    device = resolve_device(args.device)

    run = load_run(args.run_dir, which=args.checkpoint, device=device)
    bdmc_run(run, args.n, args.chains, options, split=args.split, seed=args.seed, chunk_size=args.chunk_size,
             device=device)
    return 0


if __name__ == "__main__":
    run_cli(main)
