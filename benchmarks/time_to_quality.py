"""Time to quality: wall-clock seconds of training until a validation metric first crosses a target.

Two modes:

``python -m benchmarks.time_to_quality --from-run RUN_DIR --metric val_bpd --target 1.85 [--append]``
    reads the run's ``metrics.csv`` (one row per epoch; ``seconds`` is the wall time of that epoch's
    training and validation) and reports the first epoch e at which the metric crosses the target and
    T(e) = sum_{i <= e} seconds_i, plus the test number of ``best.pt`` from the run's ``eval_test.json``.

``python -m benchmarks.time_to_quality --train vae --out RUN_DIR --metric val_elbo --target -100
--max-epochs 60 --set dataset=binarized_mnist --set batch_size=100 ... [--device auto] [--threads 1] [--append]``
    trains through the Python API ``inference.train.train`` one epoch per call (``epochs=e`` with
    ``resume=True`` after the first: a resumed run reproduces an uninterrupted one exactly) until the
    metric crosses the target or ``--max-epochs`` is reached; ``--set KEY=VALUE`` are ``train()``'s
    keyword options (a value with spaces is a multi-valued option: ``--set "hidden=500 500"``). Each
    ``train()`` call ends by evaluating ``best.pt`` on the test split (the ELBO with K = 1, or the exact
    log-likelihood), so the last call's ``eval_test.json`` is the test number of the model that crossed.

"Crosses" means <= target for metrics where lower is better (``*_bpd``, ``*loss*``) and >= target
otherwise (``val_elbo``, ``val_log_likelihood``, nats, log-likelihood sign); ``--direction`` overrides.
The reported time excludes the per-call overhead (figures, the test evaluation); the total wall time of
the training loop is printed beside it.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


from core.config import OneLineErrorParser
from benchmarks.results_rows import emit, print_table, results_row
from benchmarks.timing import add_device_arguments, setup_device
from core.errors import DGMError, run_cli
from inference.train import train

Direction = Literal["below", "above"]


@dataclass
class Crossing:
    """Where a metric first crossed its target (``epoch`` None: it never did within the rows)."""

    epoch: int | None
    seconds: float | None  # cumulative training + validation seconds up to and including that epoch
    value: float | None  # the metric at that epoch
    best_value: float  # best value over all rows read
    epochs_read: int
    total_seconds: float  # cumulative seconds over all rows read


def default_direction(metric: str) -> Direction:
    """Lower is better for bits/dim and losses; higher for ELBOs and log-likelihoods."""
    return "below" if ("bpd" in metric or "loss" in metric or metric.startswith("nll")) else "above"


def crossed(value: float, target: float, direction: Direction) -> bool:
    return value <= target if direction == "below" else value >= target


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise DGMError(f"{run_dir} has no metrics.csv (is it a run directory?)")
    with path.open() as handle:
        return list(csv.DictReader(handle))


def first_crossing(rows: list[dict[str, str]], metric: str, target: float, direction: Direction) -> Crossing:
    """Scan the per-epoch rows in order; the time is the running sum of the ``seconds`` column."""
    if not rows:
        raise DGMError("metrics.csv has no rows (no epoch finished)")
    if metric not in rows[0]:
        columns = ", ".join(k for k in rows[0] if k.startswith("val_"))
        raise DGMError(f"metrics.csv has no column {metric!r}; its validation columns: {columns}")
    if "seconds" not in rows[0]:
        raise DGMError("metrics.csv has no 'seconds' column (written by an older trainer?)")
    total = 0.0
    hit: tuple[int, float, float] | None = None
    values = []
    for row in rows:
        total += float(row["seconds"])
        value = float(row[metric])
        values.append(value)
        if hit is None and crossed(value, target, direction):
            hit = (int(row["epoch"]), total, value)
    best = min(values) if direction == "below" else max(values)
    if hit is None:
        return Crossing(None, None, None, best, len(rows), total)
    return Crossing(hit[0], hit[1], hit[2], best, len(rows), total)


def test_result(run_dir: Path) -> str:
    """The test number of ``best.pt`` from ``eval_test.json`` (first estimator at its smallest K)."""
    path = Path(run_dir) / "eval_test.json"
    if not path.is_file():
        return "no eval_test.json"
    report = json.loads(path.read_text())
    name, by_k = next(iter(report["estimators"].items()))
    k = min(by_k, key=int)
    entry = by_k[k]
    return (f"test ({report['n_examples']:,} examples, best.pt = epoch {report.get('checkpoint_epoch', '?')}): "
            f"{name} K={k}: log-likelihood {entry['log_likelihood']:.2f} ± {entry['se']:.2f} nats, "
            f"{entry['bpd']:.4f} bits/dim")


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["batch_size=100", "hidden=500 500"]`` -> {"batch_size": "100", "hidden": ["500", "500"]}."""
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise DGMError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        options[key.strip().replace("-", "_")] = value.split() if len(value.split()) > 1 else value.strip()
    return options


def train_until(model: str, out: Path, metric: str, target: float, direction: Direction, max_epochs: int,
                device: str, options: dict[str, Any]) -> tuple[Crossing, float]:
    """Train one epoch per ``inference.train.train`` call until the metric crosses; (crossing, loop wall s)."""

    if out.exists() and any(out.iterdir()):
        raise DGMError(f"{out} is not empty; time to quality needs a fresh run directory")
    start = time.perf_counter()
    crossing = None
    for epoch in range(1, max_epochs + 1):
        train(model, out, resume=epoch > 1, epochs=epoch, device=device, **options)
        crossing = first_crossing(read_metrics(out), metric, target, direction)
        print(f"[time_to_quality] epoch {epoch}: {metric} {float(read_metrics(out)[-1][metric]):.4f} "
              f"(target {target}, {direction}); {crossing.total_seconds:.0f} s of training so far", flush=True)
        if crossing.epoch is not None:
            break
    return crossing, time.perf_counter() - start


def describe_run(run_dir: Path) -> tuple[str, str, str]:
    """(data set, model description, the run's training command with its resumes) from config.json."""
    config = json.loads((Path(run_dir) / "config.json").read_text())
    options = config.get("model_options", {})
    detail = ", ".join(f"{k}={v}" for k, v in options.items()
                       if k in ("arch", "num_layers", "hidden", "latent_dim", "likelihood", "levels", "steps", "channels"))
    commands = [config.get("command", "?")] + [r.get("command", "?") for r in config.get("resumes", [])]
    return config["dataset"], f"{config['model']} ({detail})", " then ".join(commands)


def run_hardware(run_dir: Path) -> str:
    """The hardware a run was trained on, from its config.json."""
    config = json.loads((Path(run_dir) / "config.json").read_text())
    hw = config.get("hardware", {})
    packages = config.get("packages", {})
    return (f"the run's: {hw.get('cpu', '?')}, {hw.get('cpu_count', '?')} cores, {hw.get('torch_threads', '?')} torch "
            f"thread(s), GPU {hw.get('gpu') or 'none'} (torch {packages.get('torch', '?')}, "
            f"pyro-ppl {packages.get('pyro-ppl', '?')})")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.time_to_quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--from-run", type=Path, metavar="RUN_DIR", help="read an existing run's metrics.csv")
    mode.add_argument("--train", metavar="MODEL", help="train MODEL until the target is crossed")
    parser.add_argument("--metric", required=True, help="metrics.csv column, e.g. val_bpd or val_elbo")
    parser.add_argument("--target", type=float, required=True, help="the value of --metric to reach")
    parser.add_argument("--direction", choices=["below", "above"], default=None,
                        help="crossing means <= target (below) or >= target (above); default from the metric name")
    parser.add_argument("--out", type=Path, help="run directory for --train (must be new or empty)")
    parser.add_argument("--max-epochs", type=int, default=60, help="--train: give up after this many epochs (default: 60)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a keyword option of inference.train.train (repeat)")
    parser.add_argument("--append", action="store_true", help="append the result row to benchmarks/RESULTS.md")
    add_device_arguments(parser, threads=1)
    args = parser.parse_args(argv)
    direction: Direction = args.direction or default_direction(args.metric)
    device = setup_device(args)
    loop_seconds = None
    if args.train:
        if args.out is None:
            raise DGMError("--train needs --out RUN_DIR")
        if args.max_epochs < 1:
            raise DGMError(f"--max-epochs must be at least 1, got {args.max_epochs}")
        crossing, loop_seconds = train_until(args.train, args.out, args.metric, args.target, direction,
                                             args.max_epochs, device.type, parse_sets(args.set))
        run_dir = args.out
    else:
        run_dir = args.from_run
        crossing = first_crossing(read_metrics(run_dir), args.metric, args.target, direction)
    dataset, model, run_command = describe_run(run_dir)
    reached = crossing.epoch is not None
    print_table(["run", "metric", "target", "epoch reached", "seconds to target", "value then", "best value",
                 "epochs read", "training seconds (all)"],
                [[str(run_dir), args.metric, f"{'<=' if direction == 'below' else '>='} {args.target}",
                  crossing.epoch if reached else "not reached",
                  f"{crossing.seconds:.0f}" if reached else "—", f"{crossing.value:.4f}" if reached else "—",
                  f"{crossing.best_value:.4f}", crossing.epochs_read, f"{crossing.total_seconds:.0f}"]])
    test = test_result(run_dir)
    print(test)
    if loop_seconds is not None:
        print(f"wall time of the whole training loop (with figures and a test evaluation per call): "
              f"{loop_seconds:.0f} s")
    measured_on = "measured on " + device.type if args.train else "the run's own hardware (config.json)"
    if reached:
        result = (f"{args.metric} {crossing.value:.4f} (target {args.target}) first reached at epoch {crossing.epoch}"
                  f" after {crossing.seconds:.0f} s = {crossing.seconds / 60:.1f} min of training + validation "
                  f"(sum of metrics.csv seconds; {measured_on}); {test}")
    else:
        result = (f"target {args.metric} {args.target} NOT reached in {crossing.epochs_read} epochs "
                  f"({crossing.total_seconds:.0f} s; best {crossing.best_value:.4f}); {test}")
    if loop_seconds is not None:
        result += f"; loop wall time {loop_seconds:.0f} s"
    estimator = f"time to {args.metric} {'<=' if direction == 'below' else '>='} {args.target}"
    note = (f"(trains through inference.train.train, one epoch per call, into {run_dir})" if args.train
            else f"(run trained by: {run_command})")
    row = results_row(device, dataset, model, estimator, result, command_note=note,
                      hardware=None if args.train else run_hardware(run_dir))
    return emit([row], args.append)


if __name__ == "__main__":
    run_cli(main)
