"""Log-likelihood of a trained GAN by AIS, after Wu et al. (2017), "On the quantitative analysis of
decoder-based generative models".

A GAN's generator G defines no density of the data by itself. Give it a Gaussian observation model
of fixed standard deviation sigma on the [0, 1) scale of uniformly dequantized pixels (the GAN's
``observation="gaussian"``, ``obs_sigma``)::

    z ~ N(0, I),   u ~ U[0, 1)^D,   y = (x + u) / levels ~ N(G(z), sigma^2 I)

with the Jacobian of the scaling included, so that log p is of the discrete data x. sigma is not
trained (the adversarial game never sees it); as Wu et al. do, it is chosen on validation data:
the same weights are rebuilt with each sigma of ``--sigmas`` (``dataclasses.replace`` on the run's
config), AIS estimates the mean validation log-likelihood for each, and the best sigma is kept.
Then AIS on the test examples gives the reported number (a stochastic lower bound on log P(x):
AIS is one, and u is drawn once per chain and held fixed, see ``evaluation.ais``), and BDMC on data
simulated from the model at that sigma bounds AIS's annealing error (``evaluation.bdmc``).

``python -m evaluation.gan_likelihood RUN_DIR --sigmas 0.01 0.02 0.05 0.1 --val-limit 100 --limit 100
--ais-steps S --chains K`` writes ``gan_likelihood.json`` into the run directory.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from typing import Any, Callable, Sequence

import torch

from core.config import OneLineErrorParser
from core.device import THREADS_HELP, resolve_device, set_threads
from core.errors import DGMError, run_cli
from core.run_lock import RunLock
from core.run_dir import SCHEMA_VERSION, provenance, write_json
from core.seeding import stable_seed
from evaluation.ais import AISOptions, add_ais_arguments, ais_options, run_ais
from evaluation.bdmc import add_chains_argument, add_run_arguments, bidirectional_monte_carlo, summary
from evaluation.diagnostics import standard_error
from evaluation.sample_passes import check_num_samples
from core.units import bits_per_dim
from models.registry import model_spec
from inference.training.load_run import load_run

DEFAULT_SIGMAS = (0.01, 0.02, 0.05, 0.1)


def gaussian_gan(run: Any, sigma: float) -> Any:
    """The run's GAN rebuilt with ``observation="gaussian"`` and ``obs_sigma=sigma``, same weights, eval mode."""

    if run.config.get("model") != "gan":
        raise DGMError(f"{run.run_dir} holds a {run.config.get('model')!r} model; gan_likelihood is for GAN runs "
                       "(use python -m evaluation.evaluate --estimators ais for other decoder models)")
    fields = {f.name for f in dataclasses.fields(run.model_config)}
    if not {"observation", "obs_sigma"} <= fields:
        raise DGMError("this version of the GAN has no Gaussian observation model (config fields observation and "
                       "obs_sigma)")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise DGMError(f"every sigma must be a positive number, got {sigma!r}")
    config = dataclasses.replace(run.model_config, observation="gaussian", obs_sigma=float(sigma))
    if hasattr(config, "validate"):
        config.validate()
    model = model_spec("gan").build(config, run.model.spec)
    model.load_state_dict(run.model.state_dict())
    like = next(iter(run.model.state_dict().values()))
    return model.to(like.device).eval()


def _stats(values: torch.Tensor, dim: int) -> dict[str, float]:
    mean = float(values.mean())
    return {"log_likelihood": mean, "nll": -mean, "se": standard_error(values), "bpd": bits_per_dim(-mean, dim)}


def gan_likelihood(run: Any, sigmas: Sequence[float] = DEFAULT_SIGMAS, *, val_limit: int = 100, limit: int = 100,
                   bdmc_n: int | None = None, num_chains: int = 16, options: AISOptions | None = None,
                   pilot_chains: int | None = None, seed: int = 0, chunk_size: int | None = None,
                   device: torch.device | None = None, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Pick sigma by validation AIS, then test AIS and BDMC at that sigma; write and return ``gan_likelihood.json``.

    Validation: the first ``val_limit`` examples of the val split; test: the first ``limit`` of the test
    split; BDMC: ``bdmc_n`` (default ``limit``) examples simulated from the model (0: skip BDMC).
    ``pilot_chains`` overrides ``options.pilot_chains``. Each stage's noise is seeded from
    ``stable_seed("gan_likelihood", seed, stage, ...)``."""
    with RunLock(run.run_dir, "measuring the GAN's likelihood"):  # one writer of the run's files; refused before any work
        options = options or AISOptions()
        if pilot_chains is not None:
            options = dataclasses.replace(options, pilot_chains=pilot_chains)
        options.validate()
        check_num_samples(num_chains)
        if not sigmas:
            raise DGMError("--sigmas needs at least one value")
        for name, value in (("--val-limit", val_limit), ("--limit", limit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DGMError(f"{name} must be at least 1, got {value}")
        bdmc_n = limit if bdmc_n is None else bdmc_n
        if isinstance(bdmc_n, bool) or not isinstance(bdmc_n, int) or bdmc_n < 0:
            raise DGMError(f"--bdmc-n must be >= 0, got {bdmc_n}")
        models = {float(s): gaussian_gan(run, s) for s in sigmas}  # every sigma checked before any costly work
        device = device or torch.device("cpu")
        dim = run.dataset.spec.dim
        val = run.dataset.split("val")[:val_limit].to(device)
        test = run.dataset.split("test")[:limit].to(device)
        say = log or (lambda _: None)

        selection = []
        for sigma, model in models.items():
            model.to(device)
            torch.manual_seed(stable_seed("gan_likelihood", seed, "validation", sigma))
            start = time.perf_counter()
            result = run_ais(model.model, val, num_chains, options, chunk_size)
            entry = {"sigma": sigma, **_stats(result.estimates, dim), "seconds": time.perf_counter() - start,
                     "acceptance": float(result.acceptance.mean())}
            selection.append(entry)
            say(f"sigma {sigma:<8g} validation NLL {entry['nll']:10.3f} ± {entry['se']:.3f} nats "
                f"({entry['bpd']:.4f} bits/dim)  {entry['seconds']:.1f}s")
        best = max(selection, key=lambda e: e["log_likelihood"])
        sigma = best["sigma"]
        model = models[sigma]

        torch.manual_seed(stable_seed("gan_likelihood", seed, "test"))
        start = time.perf_counter()
        result = run_ais(model.model, test, num_chains, options, chunk_size)
        test_entry = {"n": int(test.shape[0]), **_stats(result.estimates, dim), "seconds": time.perf_counter() - start,
                      "acceptance": float(result.acceptance.mean())}
        say(f"sigma {sigma:g}: test NLL {test_entry['nll']:.3f} ± {test_entry['se']:.3f} nats "
            f"({test_entry['bpd']:.4f} bits/dim), AIS K={num_chains}, {options.num_steps} {options.schedule} steps")

        bdmc_entry: dict[str, Any] | None = None
        if bdmc_n:
            torch.manual_seed(stable_seed("gan_likelihood", seed, "bdmc"))
            x_like = run.dataset.split("test")[:bdmc_n].to(device)
            start = time.perf_counter()
            bdmc = bidirectional_monte_carlo(model.model, x_like, num_chains, options, chunk_size=chunk_size)
            bdmc_entry = {"n": int(x_like.shape[0]), **summary(bdmc, dim), "seconds": time.perf_counter() - start}
            say(f"BDMC gap on {bdmc_entry['n']} simulated examples: {bdmc_entry['gap']['mean']:.3f} ± "
                f"{bdmc_entry['gap']['se']:.3f} nats ({bdmc_entry['gap']['bpd']:.5f} bits/dim)")

        out = {"schema_version": SCHEMA_VERSION, "run": str(run.run_dir), "model": run.config["model"],
               "dataset": run.config["dataset"], "checkpoint_epoch": run.epoch, "estimator": "ais",
               "chains": num_chains, "pilot_chains": options.pilot_chains, "options": options.as_dict(), "seed": seed,
               "val_limit": int(val.shape[0]), "sigmas": selection, "best_sigma": sigma, "test": test_entry,
               "bdmc": bdmc_entry, "provenance": provenance(device)}
        write_json(run.run_dir / "gan_likelihood.json", out)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.gan_likelihood", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a GAN run directory written by inference.train")
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SIGMAS),
                        help="observation standard deviations to choose from, on the [0, 1) pixel scale "
                             f"(default: {' '.join(map(str, DEFAULT_SIGMAS))})")
    parser.add_argument("--val-limit", type=int, default=100, help="validation examples that choose sigma "
                        "(default: 100)")
    parser.add_argument("--limit", type=int, default=100, help="test examples (default: 100)")
    parser.add_argument("--bdmc-n", type=int, default=None, help="examples simulated for BDMC (default: --limit; "
                        "0: no BDMC)")
    add_chains_argument(parser)
    add_ais_arguments(parser)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    options = ais_options(args)
    device = resolve_device(args.device)

    run = load_run(args.run_dir, which=args.checkpoint, device=device)
    gan_likelihood(run, args.sigmas, val_limit=args.val_limit, limit=args.limit, bdmc_n=args.bdmc_n,
                   num_chains=args.chains, options=options, seed=args.seed,
                   chunk_size=args.chunk_size, device=device)
    return 0


if __name__ == "__main__":
    run_cli(main)
