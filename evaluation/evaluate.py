"""``python -m evaluation.evaluate RUN_DIR [--split test] [--estimators ...] [--num-samples K ...] [--limit N] [--every S]``

Writes ``eval_<split>.json`` (summaries per estimator and K) and ``eval_<split>_examples.csv``
(per-example log-likelihoods, with Pareto k-hat and ESS where K >= 100) into the run directory,
merging with earlier evaluations of the same examples and checkpoint.

One pass of K samples from the guide serves both ``elbo`` and ``importance_sampled`` at that K
(the mean and the log-mean-exp of the same log-weights), so the ELBO-vs-IS gap per example is a
paired comparison and the guide is sampled once; ``naive_monte_carlo`` is a pass from the prior.
``ais`` (annealed importance sampling, ``evaluation.ais``; not in the default set: it is costly) runs
K chains per example with ``--ais-steps``, ``--ais-schedule``, ``--ais-leapfrog``, ``--ais-step-size``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from core.config import OneLineErrorParser
from core.device import THREADS_HELP, resolve_device, set_threads
from core.errors import DGMError, run_cli
from inference.training.load_run import LoadedRun, load_run
from core.run_dir import SCHEMA_VERSION, atomic_write_text, provenance, write_json
from evaluation.ais import AISOptions, run_ais
from evaluation.diagnostics import effective_sample_size, pareto_khat, standard_error
from evaluation.estimators import ESTIMATORS, check_estimates, check_num_samples, exact, has_exact, log_mean_exp, log_weight_chunks
from core.units import bits_per_dim

#: k-hat (and ESS) are computed only from K >= 100 samples: PSIS fits the tail's largest ~3 sqrt(K) weights
KHAT_MIN_K = 100
#: which pass feeds each sampling estimator, and how its log-weights (n, K) reduce to estimates (n,)
PASSES: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "naive_monte_carlo": ("prior", log_mean_exp),
    "elbo": ("guide", lambda lw: lw.mean(-1)),
    "importance_sampled": ("guide", log_mean_exp),
}
#: estimators whose value is an importance-sampling average, so that k-hat judges its reliability
KHAT_ESTIMATORS = ("naive_monte_carlo", "importance_sampled")
EXAMPLE_COLUMNS = ["example_id", "estimator", "K", "log_likelihood", "khat", "ess"]

Row = tuple[int, str, int, float, float | None, float | None]


def default_estimators(model: Any) -> list[str]:
    """Latent-variable models: naive MC, ELBO and IS (and exact where a closed form exists); exact models: exact."""
    if not getattr(model, "has_latents", True):
        return ["exact"]
    return ["naive_monte_carlo", "elbo", "importance_sampled"] + (["exact"] if has_exact(model) else [])


def summarise(estimates: torch.Tensor, dim: int, seconds: float, khat: np.ndarray | None = None,
              ess: torch.Tensor | None = None) -> dict[str, Any]:
    """One ``eval_<split>.json`` entry: mean log-likelihood, NLL, its standard error, bits/dim, k-hat, ESS."""
    mean = float(estimates.mean())
    entry: dict[str, Any] = {"log_likelihood": mean, "nll": -mean, "se": standard_error(estimates),
                             "bpd": bits_per_dim(-mean, dim), "seconds": seconds}
    if khat is not None:
        entry["khat"] = {"mean": float(np.mean(khat)), "median": float(np.median(khat)),
                         "max": float(np.max(khat)), "frac_above_0.7": float(np.mean(khat > 0.7))}
    if ess is not None:
        entry["ess"] = {"mean": float(ess.mean()), "min": float(ess.min())}
    return entry


def sampling_pass(model: Any, x: torch.Tensor, proposal: str, num_samples: int, names: Sequence[str],
                  chunk_size: int | None = None) -> tuple[dict[str, torch.Tensor], np.ndarray | None, torch.Tensor | None]:
    """One pass of K samples per example: estimates (N,) for each of ``names`` from the same log-weights,
    and per-example k-hat and ESS (K >= ``KHAT_MIN_K``), computed chunk by chunk (never all (N, K) at once)."""
    estimates: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    khats: list[np.ndarray] = []
    esss: list[torch.Tensor] = []
    diagnose = num_samples >= KHAT_MIN_K
    for _, lw in log_weight_chunks(model.model, model.guide, x, num_samples, proposal=proposal, chunk_size=chunk_size):
        for name in names:
            estimates[name].append(PASSES[name][1](lw))
        if diagnose:
            khats.append(pareto_khat(lw))
            esss.append(effective_sample_size(lw))
    out = {name: check_estimates(torch.cat(parts)) for name, parts in estimates.items()}
    return out, (np.concatenate(khats) if diagnose else None), (torch.cat(esss) if diagnose else None)


def evaluate_model(model: Any, x: torch.Tensor, estimators: Sequence[str], num_samples: Sequence[int], dim: int,
                   chunk_size: int | None = None, seed: int = 0, example_ids: Sequence[int] | None = None,
                   log: Callable[[str], None] | None = print, ais_options: AISOptions | None = None,
                   ais_pilot_chains: int = 4) -> tuple[dict[str, dict[str, Any]], list[Row]]:
    """Every estimator at every K on data ``x``: (summaries {name: {str(K): entry}}, per-example rows).

    ``example_ids``: the examples' indices in their split (default 0..N-1), written to the rows.
    ``ais_options``: annealing schedule and HMC settings of ``ais`` (K = its number of chains)."""
    for k in num_samples:
        check_num_samples(k)
    ids = list(range(x.shape[0])) if example_ids is None else [int(i) for i in example_ids]
    if len(ids) != x.shape[0]:
        raise ValueError("one example id per example")
    summaries: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []

    def record(name: str, k: int, est: torch.Tensor, seconds: float, khat: np.ndarray | None,
               ess: torch.Tensor | None) -> None:
        use_diag = name in KHAT_ESTIMATORS and khat is not None
        entry = summarise(est, dim, seconds, khat if use_diag else None, ess if use_diag else None)
        summaries.setdefault(name, {})[str(k)] = entry
        for i, v in enumerate(est.tolist()):
            rows.append((ids[i], name, k, float(v), float(khat[i]) if use_diag else None,
                         float(ess[i]) if use_diag else None))
        if log is not None:
            diag = (f"  k-hat mean {entry['khat']['mean']:.2f}, {100 * entry['khat']['frac_above_0.7']:.0f}% > 0.7"
                    if "khat" in entry else "")
            log(f"{name:>20s}  K={k:<5d}  NLL {entry['nll']:10.3f} ± {entry['se']:.3f} nats  "
                f"({entry['bpd']:.4f} bits/dim)  {seconds:.1f}s{diag}")

    for k in num_samples:
        for proposal in ("prior", "guide"):
            names = [n for n in estimators if n in PASSES and PASSES[n][0] == proposal]
            if not names:
                continue
            torch.manual_seed(seed * 1_000_003 + 2 * k + (proposal == "prior"))  # distinct noise per pass
            start = time.perf_counter()
            estimates, khat, ess = sampling_pass(model, x, proposal, k, names, chunk_size)
            seconds = time.perf_counter() - start
            for name in names:
                record(name, k, estimates[name], seconds, khat, ess)
    if "ais" in estimators:
        options = (ais_options or AISOptions()).validate()
        for k in num_samples:
            torch.manual_seed(seed * 1_000_003 + 2 * k + 7919)  # noise distinct from the other passes
            start = time.perf_counter()
            result = run_ais(model.model, x, k, options, chunk_size, ais_pilot_chains)
            record("ais", k, check_estimates(result.estimates), time.perf_counter() - start, None, None)
            summaries["ais"][str(k)].update({"steps": options.num_steps, "schedule": options.schedule,
                                             "leapfrog_steps": options.leapfrog_steps,
                                             "step_size": options.step_size, "pilot_chains": ais_pilot_chains,
                                             "acceptance": float(result.acceptance.mean())})
    if "exact" in estimators:
        start = time.perf_counter()
        est = exact(model.model, model.guide, x, chunk_size=chunk_size)
        record("exact", 1, est, time.perf_counter() - start, None, None)
    return summaries, rows


def check_estimators(model: Any, estimators: Sequence[str]) -> None:
    unknown = [n for n in estimators if n not in ESTIMATORS]
    if unknown:
        raise DGMError(f"unknown estimator {unknown[0]!r}; choose from {', '.join(ESTIMATORS)}")
    if "exact" in estimators and not has_exact(model):
        raise DGMError("the exact estimator needs a model without latent sample sites or with a closed-form "
                       "log_marginal(x); this model has neither (use importance_sampled)")
    if not getattr(model, "has_latents", True) and any(n != "exact" for n in estimators):
        raise DGMError("this model has no latent variables: its log-likelihood is exact (use --estimators exact)")


def evaluate_run(run: LoadedRun, split: str = "test", estimators: Sequence[str] | None = None,
                 num_samples: Sequence[int] = (1,), limit: int | None = None, chunk_size: int | None = None,
                 seed: int = 0, device: torch.device | None = None, every: int = 1,
                 ais_options: AISOptions | None = None, ais_pilot_chains: int = 4) -> dict[str, Any]:
    """Evaluate ``run`` on ``split`` with each estimator and K; write and return ``eval_<split>.json``.

    The examples are ``split[::every][:limit]`` (``every`` > 1 gives a subset spread over the whole
    split: the static binarized MNIST test file is ordered in blocks of very different difficulty, so
    its first N examples are not a representative sample). Example ids are indices into the split."""
    names = list(estimators or default_estimators(run.model))
    check_estimators(run.model, names)
    if "ais" in names:
        (ais_options or AISOptions()).validate()
    for k in num_samples:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise DGMError(f"--num-samples must be at least 1, got {k}")
    x = run.dataset.split(split)
    if every < 1:
        raise DGMError(f"--every must be at least 1, got {every}")
    ids = torch.arange(x.shape[0])[::every]
    if limit is not None:
        if limit < 1:
            raise DGMError(f"--limit must be at least 1, got {limit}")
        ids = ids[:limit]
    x = x[ids]
    if x.shape[0] == 0:
        raise DGMError(f"the {split} split of {run.config['dataset']} is empty: nothing to evaluate")
    device = device or torch.device("cpu")
    run.model.to(device)
    x = x.to(device)
    summaries, rows = evaluate_model(run.model, x, names, list(num_samples), run.dataset.spec.dim, chunk_size, seed,
                                     ids.tolist(), ais_options=ais_options, ais_pilot_chains=ais_pilot_chains)
    path = run.run_dir / f"eval_{split}.json"
    examples = run.run_dir / f"eval_{split}_examples.csv"
    result = json.loads(path.read_text()) if path.is_file() else {}
    if (result.get("n_examples") != x.shape[0] or result.get("every", 1) != every
            or result.get("checkpoint_epoch") != run.epoch):
        result, previous = {}, []  # other examples or another checkpoint: start afresh rather than mix
    else:
        previous = read_examples(examples)
    result.update({"schema_version": SCHEMA_VERSION, "run": str(run.run_dir), "model": run.config["model"],
                   "dataset": run.config["dataset"], "split": split, "n_examples": int(x.shape[0]),
                   "every": every, "limit": limit,
                   "checkpoint_epoch": run.epoch, "provenance": provenance(device)})
    result.setdefault("estimators", {})
    for name, by_k in summaries.items():
        result["estimators"].setdefault(name, {}).update(by_k)
    write_json(path, result)
    _write_examples(examples, previous, rows)
    return result


def read_examples(path: Path) -> list[Row]:
    """Rows of an ``eval_<split>_examples.csv`` (k-hat and ESS None where absent)."""
    if not path.is_file():
        return []

    def number(value: str | None) -> float | None:
        return float(value) if value not in (None, "") else None

    with path.open(newline="") as handle:
        return [(int(r["example_id"]), r["estimator"], int(r["K"]), float(r["log_likelihood"]),
                 number(r.get("khat")), number(r.get("ess"))) for r in csv.DictReader(handle)]


def _write_examples(path: Path, previous: list[Row], rows: list[Row]) -> None:
    """Write earlier rows and new ones, the new replacing earlier rows of the same (estimator, K)."""
    replaced = {(r[1], r[2]) for r in rows}
    kept = [r for r in previous if (r[1], r[2]) not in replaced]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXAMPLE_COLUMNS)
    writer.writerows((i, n, k, repr(v), "" if kh is None else repr(kh), "" if e is None else repr(e))
                     for i, n, k, v, kh, e in kept + rows)
    atomic_write_text(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run directory written by inference.train")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--estimators", nargs="+", default=None, help=f"any of {', '.join(ESTIMATORS)} "
                        "(default: naive_monte_carlo elbo importance_sampled, plus exact where it applies)")
    parser.add_argument("--num-samples", type=int, nargs="+", default=[1, 10, 100, 1000], metavar="K",
                        help="numbers of samples per example, one pass each (default: 1 10 100 1000)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="first N examples of the split "
                        "(after --every)")
    parser.add_argument("--every", type=int, default=1, metavar="S", help="every S-th example of the split "
                        "(a subset spread over the whole split; default 1: all)")
    parser.add_argument("--chunk-size", type=int, default=None, help="examples per chunk (default: automatic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    ais = AISOptions()
    parser.add_argument("--ais-steps", type=int, default=ais.num_steps, metavar="T",
                        help=f"ais: annealing steps (default: {ais.num_steps})")
    parser.add_argument("--ais-schedule", default=ais.schedule, help=f"ais: linear or sigmoid (default: {ais.schedule})")
    parser.add_argument("--ais-leapfrog", type=int, default=ais.leapfrog_steps,
                        help=f"ais: leapfrog steps per HMC transition (default: {ais.leapfrog_steps})")
    parser.add_argument("--ais-step-size", type=float, default=ais.step_size,
                        help=f"ais: initial HMC step size, then adapted by pilot chains (default: {ais.step_size})")
    parser.add_argument("--ais-pilot-chains", type=int, default=4,
                        help="ais: extra chains per example that tune the step sizes, not counted (default: 4)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    run = load_run(args.run_dir, which=args.checkpoint, device=device)
    ais_options = AISOptions(num_steps=args.ais_steps, schedule=args.ais_schedule, leapfrog_steps=args.ais_leapfrog,
                             step_size=args.ais_step_size)
    evaluate_run(run, args.split, args.estimators, args.num_samples, args.limit, args.chunk_size, args.seed, device,
                 args.every, ais_options=ais_options, ais_pilot_chains=args.ais_pilot_chains)
    return 0


if __name__ == "__main__":
    run_cli(main)
