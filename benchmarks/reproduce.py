"""Reproduce the literature: one preset per paper row, one command each.

    python -m benchmarks.reproduce PRESET --out RUN_DIR [--device auto] [--budget-epochs N]
                                   [--set OPTION=VALUE ...] [--evaluate] [--append]
    python -m benchmarks.reproduce --list

Each preset is the paper's architecture, objective, optimiser, batch size and full schedule, and the
paper's evaluation (estimator, K, split). The command trains the preset into ``RUN_DIR`` with
``inference.train`` (resuming the run when ``RUN_DIR`` holds one, so a long schedule is done in
chunks: ``--budget-epochs N`` trains at most N more epochs this call), and once the schedule is
complete (or with ``--evaluate``, for a run stopped at a budget) evaluates ``best.pt`` with the paper's
estimator and prints our number beside the paper's; ``--append`` adds it to ``benchmarks/RESULTS.md``.

``--set OPTION=VALUE`` changes a preset option (e.g. ``--set batch_size=100`` to use a larger batch
on a CPU); every change is printed and recorded in the RESULTS row, so a number is never silently
from another setting. The same commands run unchanged on a GPU (``--device auto`` picks it).

Where a paper leaves a setting open, the preset's ``notes`` say what we chose and why.
"""
from __future__ import annotations

from core.errors import quiet_interrupts

if __name__ == "__main__":
    quiet_interrupts()  # Ctrl-C during the heavy imports below: one line, not a traceback

import argparse
import ast
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.results_rows import append_rows, results_row
from core.device import THREADS_HELP, resolve_device, set_threads
from core.config import OneLineErrorParser
from core.errors import DGMError, run_cli
from core.run_dir import CHECKPOINT, CONFIG, METRICS, MetricsLog, load_checkpoint, read_config
from evaluation.evaluate import evaluate_run
from inference.train import main as train_main
from inference.training.load_run import load_run


@dataclass(frozen=True)
class Preset:
    """One literature row: how the paper trained and evaluated, and the number it reported."""

    name: str
    paper: str
    reported: float
    unit: str  # "nats" (NLL per image) or "bits/dim"
    model: str
    options: dict[str, Any]
    estimator: str
    num_samples: int
    notes: str
    #: overrides of a smoke run (seconds): the preset's code path with tiny sizes
    smoke: dict[str, Any] = field(default_factory=dict)
    split: str = "test"

    @property
    def epochs(self) -> int:
        return int(self.options["epochs"])


#: Burda, Grosse & Salakhutdinov (2016), section 5: Adam (beta1 0.9, beta2 0.999, eps 1e-4), minibatches
#: of 20, 3^i passes at lr 0.001 * 10^(-i/7) for i = 0..7 (3,280 passes), one stochastic layer 784-200-200-50
#: (tanh), test NLL by L_5000 (importance sampling with 5,000 samples)
BURDA = {"preset": "burda", "dataset": "binarized_mnist", "epochs": 3280, "batch_size": 20, "lr": 1e-3,
         "lr_schedule": "burda", "adam_eps": 1e-4}
BURDA_NOTES = ("Burda et al. 2016, one stochastic layer; weights initialised by torch's default (the paper: Glorot "
               "& Bengio's heuristic); the paper's numbers are NLL = -L_5000 on the test set; active units are the "
               "run's val_active_units at best.pt")
SMOKE_MNIST = {"epochs": 1, "epoch_size": 64, "batch_size": 32}
#: The authors' code (github.com/yburda/iwae, ``datasets.binarized_mnist``, the default ``--dataset MNIST``)
#: trains on grey-level MNIST re-binarized in every minibatch, not on the static binarization, and also
#: measures L_5000 on a freshly binarized test set: the paper's Table 1 numbers are of that setting.
BURDA_DYNAMIC_NOTES = (BURDA_NOTES + "; dynamic binarization as in the authors' code (ours: re-binarized each epoch, "
                       "50,000 training images, validation and test binarized once with seed 0; theirs: each minibatch, "
                       "59,600 training images, test re-binarized per pass)")

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("burda_vae_k1", "Burda et al. 2016, VAE (k = 1)", 88.71, "nats", "vae",
           {**BURDA, "objective": "elbo", "num_particles": 1}, "importance_sampled", 5000, BURDA_NOTES, SMOKE_MNIST),
    Preset("burda_iwae_k5", "Burda et al. 2016, IWAE (k = 5)", 87.63, "nats", "vae",
           {**BURDA, "objective": "iwae", "num_particles": 5}, "importance_sampled", 5000, BURDA_NOTES, SMOKE_MNIST),
    Preset("burda_iwae_k50", "Burda et al. 2016, IWAE (k = 50)", 87.10, "nats", "vae",
           {**BURDA, "objective": "iwae", "num_particles": 50}, "importance_sampled", 5000, BURDA_NOTES, SMOKE_MNIST),
    Preset("pixelcnn_binarized_mnist", "van den Oord et al. 2016 (Pixel RNN), PixelCNN on binarized MNIST", 81.30,
           "nats", "pixelcnn",
           {"dataset": "binarized_mnist", "channels": 128, "residual_blocks": 15, "first_kernel": 7, "kernel": 3,
            "output_channels": 1024, "epochs": 200, "batch_size": 64, "lr": 1e-3, "patience": 20},
           "exact", 1,
           "the paper's MNIST PixelCNN: a 7x7 mask-A convolution, 15 residual blocks of 3x3 mask-B convolutions "
           "(h = 64 of 2h = 128 channels) and two 1x1 layers (1024 units) before the Bernoulli output; the paper "
           "does not give its optimiser schedule for MNIST: Adam at 1e-3, batch 64, early stopping on validation "
           "(patience 20) within 200 epochs", {**SMOKE_MNIST, "channels": 16, "residual_blocks": 1,
                                               "output_channels": 16}),
    Preset("realnvp_mnist", "Dinh et al. 2017 RealNVP on 8-bit MNIST (as reported by Grathwohl et al. 2019)",
           1.06, "bits/dim", "flow",
           {"dataset": "mnist", "arch": "realnvp", "levels": 3, "steps": 2, "channels": 64, "blocks": 8,
            "dequantization": "uniform", "epochs": 200, "batch_size": 64, "lr": 1e-3, "grad_clip": 100.0,
            "patience": 20},
           "elbo", 1,
           "multi-scale RealNVP (checkerboard and channel couplings, squeezes, factor-out) with ResNet conditioners "
           "of 8 blocks and 64 features as Dinh et al. use for CIFAR-10; uniform dequantization, so the number is "
           "the dequantization bound on the discrete data, as in the reported table; Adam 1e-3, batch 64",
           {**SMOKE_MNIST, "channels": 8, "blocks": 1}),
    Preset("glow_mnist", "Kingma & Dhariwal 2018 Glow on 8-bit MNIST (as reported by Grathwohl et al. 2019)", 1.05,
           "bits/dim", "flow",
           {"dataset": "mnist", "arch": "glow", "levels": 2, "steps": 32, "channels": 512, "blocks": 0,
            "dequantization": "uniform", "epochs": 200, "batch_size": 64, "lr": 1e-3, "grad_clip": 100.0,
            "patience": 20},
           "elbo", 1,
           "Glow with K = 32 steps per level (actnorm, invertible 1x1 convolution, affine coupling with 512-channel "
           "CNNs), 2 levels for 28x28 images; uniform dequantization (the dequantization bound, as reported); Adam "
           "1e-3, batch 64", {**SMOKE_MNIST, "steps": 1, "channels": 8}),
    Preset("planar_vae_k80", "Rezende & Mohamed 2015, DLGM with 80 planar flows", 85.10, "nats", "vae",
           {"dataset": "binarized_mnist", "latent_dim": 40, "hidden": (400,), "activation": "tanh",
            "posterior_flow": "planar", "flow_length": 80, "flow_context": 128, "kl_warmup_epochs": 2.0,
            "epochs": 1000, "batch_size": 100, "lr": 1e-4, "patience": 50},
           "importance_sampled", 5000,
           "Rezende & Mohamed: 40 latents, one 400-unit hidden layer, K = 80 planar layers whose parameters the "
           "encoder outputs, 500,000 updates of batch 100 (1,000 epochs), KL annealed from 0.01 to 1 over the first "
           "10,000 updates (2 epochs here, linearly from 0); they used RMSprop with momentum, we use Adam at 1e-4; "
           "the paper's MLP was maxout, ours tanh",
           {**SMOKE_MNIST, "flow_length": 2, "hidden": (16,), "latent_dim": 4, "flow_context": 8}),
)}
# each Burda row once more in the paper's own setting: the same preset on dynamically binarized MNIST
PRESETS.update({f"{p.name}_dynamic": replace(p, name=f"{p.name}_dynamic", paper=f"{p.paper}, dynamically binarized MNIST",
                                             options={**p.options, "dataset": "dynamic_binarized_mnist"},
                                             notes=BURDA_DYNAMIC_NOTES)
                for p in list(PRESETS.values()) if p.name.startswith("burda_")})


def parse_set(items: list[str]) -> dict[str, Any]:
    """``OPTION=VALUE`` pairs (Python literals where they parse: numbers, tuples; strings otherwise)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise DGMError(f"--set takes OPTION=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out[key.strip().replace("-", "_")] = value
    return out


def train_argv(preset: Preset, options: dict[str, Any], out: Path, device: str, epochs: int,
               threads: int | None = None) -> list[str]:
    """The ``inference.train`` command line of the preset (fresh, or a resume of ``out`` to ``epochs``)."""
    extra = ["--threads", str(threads)] if threads is not None else []
    if (out / CONFIG).is_file():
        return [preset.model, "--resume", "--out", str(out), "--epochs", str(epochs), "--device", device, *extra]
    argv = [preset.model, "--out", str(out), "--device", device, *extra]
    for key, value in {**options, "epochs": epochs}.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif isinstance(value, (tuple, list)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def epochs_done(out: Path) -> int:
    return int(load_checkpoint(out / CHECKPOINT)["epoch"]) if (out / CHECKPOINT).is_file() else 0


def run_preset(preset: Preset, out: Path, *, device: str = "auto", budget_epochs: int | None = None,
               changes: dict[str, Any] | None = None, evaluate: bool = False, smoke: bool = False,
               eval_limit: int | None = None, eval_every: int = 1, threads: int | None = None) -> dict[str, Any] | None:
    """Train the preset (resuming), then evaluate it when its schedule is done or ``evaluate`` says so.

    Returns the summary (paper and our number, estimator, epochs, changes) once evaluated, else None."""
    changes = {**(preset.smoke if smoke else {}), **(changes or {})}
    options = {**preset.options, **changes}
    total = int(options["epochs"])
    done = epochs_done(out)
    target = total if budget_epochs is None else min(total, done + budget_epochs)
    if done < target:
        print(f"{preset.name}: training epochs {done + 1}..{target} of {total} into {out}", flush=True)
        code = train_main(train_argv(preset, options, out, device, target, threads))
        if code:
            raise DGMError(f"{preset.name}: training failed")
    done = epochs_done(out)
    stopped_early = (out / CONFIG).is_file() and done < total and _stopped_early(out)
    if done < total and not stopped_early and not evaluate:
        print(f"{preset.name}: {done} of {total} epochs trained; run the same command to go on "
              "(or --evaluate to measure the run as it stands)", flush=True)
        return None
    run = load_run(out)
    k = min(2, preset.num_samples) if smoke else preset.num_samples
    result = evaluate_run(run, preset.split, [preset.estimator], [k], limit=eval_limit or (8 if smoke else None),
                          every=eval_every)
    entry = result["estimators"][preset.estimator][str(k)]
    ours = entry["nll"] if preset.unit == "nats" else entry["bpd"]
    se = entry["se"] if preset.unit == "nats" else entry["se"] / (run.dataset.spec.dim * 0.6931471805599453)
    summary = {"preset": preset.name, "paper": preset.paper, "reported": preset.reported, "unit": preset.unit,
               "ours": ours, "se": se, "estimator": preset.estimator, "K": k, "epochs": done, "of_epochs": total,
               "best_epoch": run.epoch, "changes": changes, "n_examples": result["n_examples"],
               "curve": validation_curve(out)}
    print(f"{preset.name}: {preset.paper}: paper {preset.reported:g} {preset.unit}, ours {ours:.4f} ± {se:.4f} "
          f"({preset.estimator}, K = {k}, {result['n_examples']} {preset.split} images, best.pt of epoch "
          f"{run.epoch}, {done}/{total} epochs{', changes: ' + json.dumps(changes) if changes else ''}); "
          f"{summary['curve']}", flush=True)
    return summary


#: the validation columns of metrics.csv, in order of preference (the conventions' names)
VALIDATION_COLUMNS = ("val_elbo", "val_log_likelihood", "val_bpd", "val_fd")


def validation_curve(out: Path) -> str:
    """The run's trajectory in one line: its validation objective at epochs 1, 2, 4, 8, ... and the last, and
    the training wall time (sum of ``seconds``), e.g. ``val_elbo by epoch: 1 -160.2, 2 -131.0, 4 -118.7; 95 s``.
    A budget run is then read with its slope, not only its end point."""
    rows = MetricsLog(out / METRICS).rows() if (out / METRICS).is_file() else []
    column = next((c for c in VALIDATION_COLUMNS if rows and rows[0].get(c) not in (None, "")), None)
    if column is None:
        return "no validation curve (metrics.csv has no validation column)"
    epochs = [int(r["epoch"]) for r in rows]
    marks = sorted({e for e in epochs if e & (e - 1) == 0} | {epochs[-1]})
    values = {int(r["epoch"]): float(r[column]) for r in rows}
    seconds = sum(float(r.get("seconds") or 0.0) for r in rows)
    return f"{column} by epoch: " + ", ".join(f"{e} {values[e]:.2f}" for e in marks) + f"; {seconds:.0f} s of training"


def _stopped_early(out: Path) -> bool:
    """Whether the run ended by early stopping (its saved patience ran out) rather than at a budget."""
    config = read_config(out)
    patience = int(config["train"].get("patience") or 0)
    state = load_checkpoint(out / CHECKPOINT)
    return bool(patience) and int(state["bad_epochs"]) >= patience


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="the literature row to reproduce")
    parser.add_argument("--list", action="store_true", help="list the presets with their papers and numbers")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: runs/repro/PRESET)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto uses a GPU when there is one (default: auto)")
    parser.add_argument("--budget-epochs", type=int, default=None, metavar="N",
                        help="train at most N more epochs in this call (run again to go on)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="OPTION=VALUE",
                        help="change preset options (recorded with the result; the option may be repeated), "
                             "e.g. batch_size=100")
    parser.add_argument("--evaluate", action="store_true",
                        help="evaluate the run as it stands, before its schedule is complete")
    parser.add_argument("--eval-limit", type=int, default=None, metavar="N",
                        help="evaluate on the first N test images only (after --eval-every; default: all)")
    parser.add_argument("--eval-every", type=int, default=1, metavar="S",
                        help="evaluate on every S-th test image, a subset spread over the split (default: 1, all)")
    parser.add_argument("--append", action="store_true", help="add the result to benchmarks/RESULTS.md")
    parser.add_argument("--smoke", action="store_true", help="the preset's code path with tiny sizes (seconds)")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    if args.list:
        for p in PRESETS.values():
            print(f"{p.name:28s} {p.reported:7g} {p.unit:8s} {p.estimator} K={p.num_samples}  {p.paper}")
        return 0
    if args.preset is None:
        raise DGMError("name a preset (python -m benchmarks.reproduce --list shows them)")
    if args.budget_epochs is not None and args.budget_epochs < 1:
        raise DGMError(f"--budget-epochs must be at least 1, got {args.budget_epochs}")
    preset = PRESETS[args.preset]
    out = args.out or Path("runs") / "repro" / preset.name
    summary = run_preset(preset, out, device=args.device, budget_epochs=args.budget_epochs,
                         changes=parse_set(args.set), evaluate=args.evaluate, smoke=args.smoke,
                         eval_limit=args.eval_limit, eval_every=args.eval_every, threads=threads)
    if summary is not None and args.append:
        append_rows([results_row(
            resolve_device(args.device), preset.options["dataset"], f"{preset.name} ({preset.model})",
            f"{preset.estimator} (K = {summary['K']}), {summary['n_examples']} {preset.split} images"
            + (f" (every {args.eval_every}th)" if args.eval_every > 1 else ""),
            f"{summary['ours']:.4f} ± {summary['se']:.4f} {preset.unit} (paper {preset.reported:g}); "
            f"{summary['epochs']}/{summary['of_epochs']} epochs, best.pt of epoch {summary['best_epoch']}"
            + (f"; changes {json.dumps(summary['changes'])}" if summary["changes"] else "")
            + f"; {summary['curve']}")])
    return 0


if __name__ == "__main__":
    run_cli(main)
