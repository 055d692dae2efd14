"""``python -m evaluation.evaluate RUN_DIR [--split test] [--estimators ...] [--num-samples K ...] [--limit N] [--every S] [--joint [PLATE]]``

Writes ``eval_<split>.json`` (summaries per estimator and K) and ``eval_<split>_examples.csv``
(per-example log-likelihoods, with Pareto k-hat and ESS where K >= 100) into the run directory,
merging with earlier evaluations of the same examples and checkpoint.

The estimators are those of the registry (``evaluation.estimator_registry``): ``--estimators`` chooses
among them, each one's options come from its options dataclass (``--ais-steps``, ``--ais-schedule``,
``--ais-leapfrog``, ``--ais-step-size``, ``--ais-pilot-chains``, ...), and they run grouped by the sample
pass they reduce. One pass of K samples from the guide serves both ``elbo`` and ``importance_sampled``
at that K (the mean and the log-mean-exp of the same log-weights), so the ELBO-vs-IS gap per example is a
paired comparison and the guide is sampled once; ``naive_monte_carlo`` is a pass from the prior; ``ais``
(not in the default set: it is costly) and ``exact`` (once, recorded at K = 1) run themselves. The noise
of each pass or run is seeded from ``core.seeding.stable_seed("evaluate", seed, pass, K)``.

``--joint`` measures the split as one example (the joint log p(x_1..N) of a model whose latents are shared
by all examples), ``--joint PLATE`` each index of a grouping plate; the JSON says which (``joint``,
``estimate_of``), and bits/dim then divide by the dimensions of the whole unit.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from core.config import OneLineErrorParser, add_prefixed_arguments, prefixed_values
from core.device import THREADS_HELP, resolve_device, set_threads
from core.errors import DGMError, run_cli
from core.run_dir import SCHEMA_VERSION, atomic_write_text, provenance, read_json, write_json
from core.run_lock import RunLock
from core.seeding import stable_seed
from core.units import bits_per_dim
from evaluation import ESTIMATORS
from evaluation.ais import AISOptions
from evaluation.diagnostics import standard_error
from evaluation.estimator_registry import EstimateRequest, EstimatorSpec, validated
from evaluation.program import Program
from evaluation.result_files import result_paths
from evaluation.sample_passes import check_estimates, check_num_samples, reduce_pass
from inference.objectives.trace_checks import ExampleUnit
from inference.training.load_run import LoadedRun, load_run

#: the shared sample passes, in the order they run at each K
PROPOSALS = ("prior", "guide")
EXAMPLE_COLUMNS = ["example_id", "estimator", "K", "log_likelihood", "khat", "ess"]

Row = tuple[int, str, int, float, float | None, float | None]


def default_estimators(model: Any) -> list[str]:
    """The registered estimators in the default set that apply to ``model`` (latent-variable models: naive MC,
    ELBO and IS, and exact where a closed form exists; exact models: exact)."""
    return [spec.name for spec in ESTIMATORS.specs() if spec.default and spec.applies(model) is None]


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


def resolve_options(specs: Sequence[EstimatorSpec], options: Mapping[str, Any] | None = None,
                    ais_options: AISOptions | None = None, ais_pilot_chains: int | None = None) -> dict[str, Any]:
    """Each spec's options (given, else its defaults), validated. ``ais_options`` and ``ais_pilot_chains``: the
    earlier way of passing AIS's (still accepted)."""
    given = dict(options or {})
    if ais_options is not None or ais_pilot_chains is not None:
        ais = ais_options or given.get("ais") or AISOptions()
        given["ais"] = ais if ais_pilot_chains is None else dataclasses.replace(ais, pilot_chains=ais_pilot_chains)
    resolved = {}
    for spec in specs:
        if spec.options is not None:
            resolved[spec.name] = validated(given.get(spec.name) or spec.options())
    return resolved


def check_estimators(model: Any, estimators: Sequence[str], joint: bool | str = False) -> list[EstimatorSpec]:
    """The specs of ``estimators``: one-line errors for an unknown name, an estimator that does not apply to
    ``model``, or one without the joint mode when ``joint`` asks for it."""
    specs = [ESTIMATORS.spec(name) for name in estimators]
    for spec in specs:
        reason = spec.applies(model)
        if reason is not None:
            raise DGMError(reason)
        if joint and not spec.joint:
            raise DGMError(f"{spec.name} has no joint mode (--joint): choose among "
                           f"{', '.join(s.name for s in ESTIMATORS.specs() if s.joint)}")
    return specs


def evaluate_model(model: Any, x: torch.Tensor, estimators: Sequence[str], num_samples: Sequence[int], dim: int,
                   chunk_size: int | None = None, seed: int = 0, example_ids: Sequence[int] | None = None,
                   log: Callable[[str], None] | None = print, options: Mapping[str, Any] | None = None,
                   joint: bool | str = False, ais_options: AISOptions | None = None,
                   ais_pilot_chains: int | None = None,
                   on_result: Callable[[str, int, dict[str, Any], list[Row]], None] | None = None,
                   ) -> tuple[dict[str, dict[str, Any]], list[Row]]:
    """Every estimator at every K on data ``x`` of the story ``model``: (summaries {name: {str(K): entry}},
    per-example rows).

    ``example_ids``: the examples' indices in their split (default 0..N-1), written to the rows (in a joint
    mode the units are numbered 0..U-1 instead). ``options``: {estimator name: its options dataclass}
    (defaults where absent). ``dim``: dimensions of one example (bits/dim). ``on_result(name, K, entry, rows)``
    is called as soon as each estimate is complete (``evaluate_run`` writes it then)."""
    for k in num_samples:
        check_num_samples(k)
    specs = check_estimators(model, estimators, joint)
    settings = resolve_options(specs, options, ais_options, ais_pilot_chains)
    program = Program.of_story(model, joint)
    ids = list(range(x.shape[0])) if example_ids is None else [int(i) for i in example_ids]
    if len(ids) != x.shape[0]:
        raise ValueError("one example id per example")
    summaries: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []

    def record(spec: EstimatorSpec, k: int, est: torch.Tensor, seconds: float, khat: np.ndarray | None = None,
               ess: torch.Tensor | None = None, extras: Mapping[str, Any] | None = None) -> None:
        use_diag = spec.importance_weights and khat is not None
        unit_ids = ids if program.unit.per_example else list(range(est.shape[0]))
        entry = summarise(est, dim * x.shape[0] // est.shape[0], seconds, khat if use_diag else None,
                          ess if use_diag else None)
        entry.update(extras or {})
        summaries.setdefault(spec.name, {})[str(k)] = entry
        new_rows = [(unit_ids[i], spec.name, k, float(v), float(khat[i]) if use_diag else None,
                     float(ess[i]) if use_diag else None) for i, v in enumerate(est.tolist())]
        rows.extend(new_rows)
        if on_result is not None:
            on_result(spec.name, k, entry, new_rows)
        if log is not None:
            diag = (f"  k-hat mean {entry['khat']['mean']:.2f}, {100 * entry['khat']['frac_above_0.7']:.0f}% > 0.7"
                    if "khat" in entry else "")
            log(f"{spec.name:>20s}  K={k:<5d}  NLL {entry['nll']:10.3f} ± {entry['se']:.3f} nats  "
                f"({entry['bpd']:.4f} bits/dim)  {seconds:.1f}s{diag}")

    def run_itself(spec: EstimatorSpec, k: int) -> None:
        torch.manual_seed(stable_seed("evaluate", seed, spec.name, k))
        start = time.perf_counter()
        result = spec.estimate(EstimateRequest(program, x, k, settings.get(spec.name), chunk_size))
        record(spec, k, check_estimates(result.estimates), time.perf_counter() - start, extras=result.extras)

    for k in num_samples:
        for proposal in PROPOSALS:
            group = [spec for spec in specs if spec.run is None and spec.proposal == proposal]
            if not group:
                continue
            torch.manual_seed(stable_seed("evaluate", seed, proposal, k))  # distinct noise per pass
            start = time.perf_counter()
            reducers = {spec.name: (lambda lw, spec=spec: spec.reduce(lw, settings.get(spec.name))) for spec in group}
            result = reduce_pass(program, x, k, proposal, reducers, chunk_size=chunk_size,
                                 diagnose=any(spec.importance_weights for spec in group))
            seconds = time.perf_counter() - start
            for spec in group:
                record(spec, k, result.estimates[spec.name], seconds, result.khat, result.ess)
        for spec in specs:
            if spec.run is not None and spec.uses_samples:
                run_itself(spec, k)
    for spec in specs:
        if spec.run is not None and not spec.uses_samples:
            run_itself(spec, 1)
    return summaries, rows


def evaluate_run(run: LoadedRun, split: str = "test", estimators: Sequence[str] | None = None,
                 num_samples: Sequence[int] = (1,), limit: int | None = None, chunk_size: int | None = None,
                 seed: int = 0, device: torch.device | None = None, every: int = 1,
                 options: Mapping[str, Any] | None = None, joint: bool | str = False,
                 ais_options: AISOptions | None = None, ais_pilot_chains: int | None = None,
                 log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Evaluate ``run`` on ``split`` with each estimator and K; write and return ``eval_<split>.json``.

    The examples are ``split[::every][:limit]`` (``every`` > 1 gives a subset spread over the whole
    split: the static binarized MNIST test file is ordered in blocks of very different difficulty, so
    its first N examples are not a representative sample). Example ids are indices into the split.
    ``options``: {estimator name: its options dataclass}; ``joint``: see the module docstring. ``log``: where the
    one line per estimate and the closing line go (None: nowhere)."""
    unit = ExampleUnit.of(joint)
    names = list(estimators or default_estimators(run.model))
    specs = check_estimators(run.model, names, unit.joint)
    resolve_options(specs, options, ais_options, ais_pilot_chains)  # refuse bad options before any work
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
    path, examples = result_paths(run.run_dir, split, every, limit, unit.joint)
    with RunLock(run.run_dir, "evaluating"):  # one writer of the run's result files
        result, previous = _existing(path, examples, x.shape[0], run.epoch)  # read (and checked) before any work
        result.update({"schema_version": SCHEMA_VERSION, "run": str(run.run_dir), "model": run.config["model"],
                       "dataset": run.config["dataset"], "split": split, "n_examples": int(x.shape[0]),
                       "every": every, "limit": limit, "joint": unit.joint, "estimate_of": unit.describe(),
                       "checkpoint_epoch": run.epoch, "provenance": provenance(device)})
        result.setdefault("estimators", {})
        rows: list[Row] = []

        def save(name: str, k: int, entry: dict[str, Any], new_rows: list[Row]) -> None:
            """Write each estimate as soon as it exists: a later failure (or Ctrl-C) keeps the finished ones."""
            result["estimators"].setdefault(name, {})[str(k)] = entry
            rows.extend(new_rows)
            write_json(path, result)
            _write_examples(examples, previous, rows)

        run.model.to(device)
        evaluate_model(run.model, x.to(device), names, list(num_samples), run.dataset.spec.dim, chunk_size, seed,
                       ids.tolist(), options=options, joint=unit.joint, ais_options=ais_options,
                       ais_pilot_chains=ais_pilot_chains, on_result=save, log=log)
    subset = f"every {every}th" if every > 1 else "all"
    if log is not None:
        log(f"evaluated {x.shape[0]} {split} examples ({subset}{f', the first {limit}' if limit else ''}) of "
            f"{run.run_dir}; wrote {path.name} and {examples.name}")
    return result


def _existing(path: Path, examples: Path, n: int, epoch: int) -> tuple[dict[str, Any], list[Row]]:
    """The results already in ``path``/``examples`` that new estimates merge into, read before the work so
    that an unreadable file is refused before minutes of computing, not after. Results of another checkpoint
    or another number of examples are replaced (and the replacement said)."""
    if not path.is_file():
        return {}, []
    result = read_json(path, "evaluation result")
    if result.get("n_examples") != n or result.get("checkpoint_epoch") != epoch:
        print(f"{path.name} holds results of {result.get('n_examples')} examples of the checkpoint of epoch "
              f"{result.get('checkpoint_epoch')}: replacing them with this evaluation ({n} examples, epoch {epoch})",
              flush=True)
        return {}, []
    return result, read_examples(examples)


def read_examples(path: Path) -> list[Row]:
    """Rows of an ``eval_<split>_examples.csv`` (k-hat and ESS None where absent); a damaged file is a
    one-line error."""
    if not path.is_file():
        return []

    def number(value: str | None) -> float | None:
        return float(value) if value not in (None, "") else None

    try:
        with path.open(newline="") as handle:
            return [(int(r["example_id"]), r["estimator"], int(r["K"]), float(r["log_likelihood"]),
                     number(r.get("khat")), number(r.get("ess"))) for r in csv.DictReader(handle)]
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error) as exc:
        raise DGMError(f"{path} is damaged ({type(exc).__name__}: {exc}); delete it or move it away and evaluate "
                       "again") from None


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


def add_estimator_arguments(parser: argparse.ArgumentParser) -> None:
    """``--estimators`` (the registry's names) and every estimator's options, generated from its dataclass."""
    specs = ESTIMATORS.specs()
    parser.add_argument("--estimators", nargs="+", default=None, choices=[s.name for s in specs], metavar="NAME",
                        help=f"any of {', '.join(s.name for s in specs)} (default: "
                             f"{' '.join(s.name for s in specs if s.default)}, those that apply to the model)")
    for spec in specs:
        if spec.options is not None:
            add_prefixed_arguments(parser, spec.options, spec.prefix, f"{spec.name} options")


def estimator_options(args: argparse.Namespace) -> dict[str, Any]:
    """{name: options dataclass} from a command line parsed with :func:`add_estimator_arguments` (validated
    later, for the estimators that run)."""
    return {spec.name: spec.options(**prefixed_values(args, spec.options, spec.prefix))
            for spec in ESTIMATORS.specs() if spec.options is not None}


def _estimator_list() -> str:
    return "estimators:\n" + "\n".join(f"  {s.name:<20s} {s.description.splitlines()[0]}" for s in ESTIMATORS.specs())


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m evaluation.evaluate", description=__doc__, epilog=_estimator_list(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run directory written by inference.train")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--num-samples", type=int, nargs="+", default=[1, 10, 100, 1000], metavar="K",
                        help="numbers of samples per example, one pass each (default: 1 10 100 1000)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="first N examples of the split "
                        "(after --every)")
    parser.add_argument("--every", type=int, default=1, metavar="S", help="every S-th example of the split "
                        "(a subset spread over the whole split; default 1: all)")
    parser.add_argument("--joint", nargs="?", const=True, default=False, metavar="PLATE",
                        help="measure the split as one example (the joint log p(x_1..N) of a model with latents "
                             "shared by the examples), or with PLATE each index of that grouping plate")
    parser.add_argument("--chunk-size", type=int, default=None, help="examples per chunk (default: automatic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    add_estimator_arguments(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    run = load_run(args.run_dir, which=args.checkpoint, device=device)
    evaluate_run(run, args.split, args.estimators, args.num_samples, args.limit, args.chunk_size, args.seed, device,
                 args.every, options=estimator_options(args), joint=args.joint)
    return 0


if __name__ == "__main__":
    run_cli(main)
