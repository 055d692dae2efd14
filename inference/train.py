"""``python -m inference.train MODEL --dataset NAME --epochs N ... --out RUN_DIR [--resume]``

Options come from ``TrainConfig`` and the model's config dataclass (``--help`` after the model name
lists them). A fresh run needs an empty or new ``--out``; ``--resume`` continues the run in
``--out`` from its last checkpoint, with its saved options (``--epochs`` may be raised; ``--device``,
``--data-dir``, ``--patience``, ``--val-batch-size`` and ``--precision`` may change; any other differing
option is refused).

``torchrun --nproc-per-node P -m inference.train MODEL ...`` trains on P processes (one per GPU, or
CPU processes with gloo); see ``inference.training.distributed``.

One orchestration for every trainer: the model family's ``ModelSpec.trainer`` names a registered
trainer class (``inference.training.registry``); this module resolves the options, prepares the run
directory, builds the trainer (handing it the evaluation layer's services, ``evaluation.judge``),
resumes, trains, draws the final figures and runs the trainer's final test evaluation.
"""
from __future__ import annotations

from core.errors import quiet_interrupts

if __name__ == "__main__":
    quiet_interrupts()  # Ctrl-C during the heavy imports below: one line, not a traceback


import argparse
from pathlib import Path
from typing import Any

import torch

from contextlib import nullcontext
from dataclasses import fields

from core.config import OneLineErrorParser, add_dataclass_arguments, build_config, explicit_options, to_jsonable
from core.device import THREADS_HELP, set_threads
from core.errors import DGMError, Interrupted, run_cli
from core.memory import check_fits, parameter_bytes
from core.paths import check_output_dir
from core.run_dir import (CHECKPOINT, CONFIG, SCHEMA_VERSION, load_checkpoint, provenance, read_config,
                          remove_stale_temporaries, write_json)
from core.run_lock import LOCK_FILES, RunLock
from core.seeding import seed_everything
from data import load_dataset
from evaluation.judge import EvaluationJudge
from inference.training.config import TrainConfig
from inference.training.distributed import DistributedContext, distributed_session
from inference.training.load_run import load_run
from inference.training.precision import Precision
from inference.training.trainers import trainer_spec
from models.registry import MODELS, ModelSpec, model_spec


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m inference.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="model", metavar="MODEL", parser_class=OneLineErrorParser)
    sub.required = True
    for name, spec in sorted(MODELS.items()):
        p = sub.add_parser(name, help=spec.description, description=spec.description)
        add_dataclass_arguments(p, TrainConfig, "training options", spec.train_defaults)
        add_dataclass_arguments(p, spec.config_cls, f"{name} options")
        p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/MODEL-DATASET-SEED)")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
        p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    return parser


def _resumable(name: str) -> bool:
    return any(f.name == name and f.metadata.get("resumable") for f in fields(TrainConfig))


def _resumable_flags() -> str:
    return ", ".join("--" + f.name.replace("_", "-") for f in fields(TrainConfig) if f.metadata.get("resumable"))


def resolve_configs(args: argparse.Namespace, model_config_cls: type) -> tuple[TrainConfig, Any, dict[str, Any] | None]:
    """Fresh run: defaults (the family's own first) + command line. Resume: saved config, checked
    against the explicit options."""
    train_opts = explicit_options(args, TrainConfig)
    model_opts = explicit_options(args, model_config_cls)
    if not args.resume:
        train_values = {**model_spec(args.model).train_defaults, **train_opts}
        return build_config(TrainConfig, train_values), build_config(model_config_cls, model_opts), None
    saved = read_config(args.out)
    if saved["model"] != args.model:
        raise DGMError(f"{args.out} holds a {saved['model']!r} run, not {args.model!r}")
    merged_train = dict(saved["train"])
    for key, value in train_opts.items():
        old = merged_train.get(key)
        if _resumable(key):
            if key == "epochs" and value < _last_epoch(args.out):
                raise DGMError(f"--epochs {value} is below the {_last_epoch(args.out)} epochs already trained")
            merged_train[key] = value
        elif _normal(old) != _normal(value):
            raise DGMError(f"--{key.replace('_', '-')} {value} differs from the saved run's {old}; "
                           f"a resumed run keeps its options (only {_resumable_flags()} may change)")
    for key, value in model_opts.items():
        old = saved["model_options"].get(key)
        if _normal(old) != _normal(value):
            raise DGMError(f"--{key.replace('_', '-')} {value} differs from the saved run's {old}; "
                           "a resumed run keeps its model options")
    return (build_config(TrainConfig, merged_train), build_config(model_config_cls, saved["model_options"]), saved)


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _last_epoch(run_dir: Path) -> int:
    """Epochs in the run's checkpoint (0 for a run stopped before its first checkpoint)."""
    if not (Path(run_dir) / CHECKPOINT).is_file():
        return 0
    return int(load_checkpoint(Path(run_dir) / CHECKPOINT)["epoch"])


def _content(out: Path) -> list[Path]:
    """What a directory holds besides the lock's own files."""
    return [p for p in out.iterdir() if p.name not in LOCK_FILES]


def check_run_dir(args: argparse.Namespace, train: TrainConfig) -> Path:
    """Where the run goes, checked before anything is written: a fresh run needs a new or empty ``--out``
    (a file, or a directory that cannot be created, is refused); ``--resume`` needs a run directory."""
    out = args.out or Path("runs") / f"{args.model}-{train.dataset}-seed{train.seed}"
    args.out = out
    if out.exists() and not out.is_dir():
        raise DGMError(f"--out {out} is a file, not a run directory")
    if args.resume:
        if not (out / CONFIG).is_file():
            raise DGMError(f"--resume: {out} is not a run directory (no {CONFIG})")
    elif out.exists() and _content(out):
        unfinished = (out / CONFIG).is_file() and not (out / CHECKPOINT).is_file()
        raise DGMError(f"{out} is not empty" + (" (a run stopped before its first checkpoint)" if unfinished else "")
                       + "; pass --resume to continue that run or choose another --out")
    return check_output_dir(out, "--out")


def prepare_run_dir(args: argparse.Namespace, train: TrainConfig) -> Path:
    """``check_run_dir``, then create the directory."""
    out = check_run_dir(args, train)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DGMError(f"--out {out} cannot be created: {exc.strerror or exc}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    spec = model_spec(args.model)
    if args.resume and args.out is None:
        raise DGMError("--resume needs --out RUN_DIR")
    if args.resume:
        check_run_dir(args, TrainConfig())  # validates before configs are read
    train, model_config, saved = resolve_configs(args, spec.config_cls)
    with distributed_session(train.device) as (dist, device):
        return _train(args, spec, train, model_config, saved, dist, device)


def run_config(args: argparse.Namespace, train: TrainConfig, model_config: Any, saved: dict[str, Any] | None,
               dist: DistributedContext, device: torch.device) -> dict[str, Any]:
    """``config.json``: fresh (every resolved option, provenance) or the saved one with this resume noted."""
    if saved is None:
        return {"schema_version": SCHEMA_VERSION, "model": args.model, "dataset": train.dataset,
                "seed": train.seed, "train": to_jsonable(train), "model_options": to_jsonable(model_config),
                **provenance(device), **dist.describe()}
    saved["train"]["epochs"] = train.epochs
    saved.setdefault("resumes", []).append({**provenance(device), **dist.describe(), "epochs": train.epochs})
    return saved


def _train(args: argparse.Namespace, spec: ModelSpec, train: TrainConfig, model_config: Any,
           saved: dict[str, Any] | None, dist: DistributedContext, device: torch.device) -> int:
    """Train (every process under torchrun); rank 0 alone writes files, draws figures and evaluates.

    Everything that can fail on the inputs (options, data files, the model's acceptance of the data)
    is checked before the run directory is created or touched, so a refusal leaves nothing behind;
    rank 0 holds the run directory's lock from then to the end."""
    trainer_cls = trainer_spec(spec.trainer).cls
    dist.check_batch_size(train.batch_size)
    Precision(train.precision, device)  # refuses fp16 without CUDA before anything is written
    dataset = load_dataset(train.dataset, train.data_dir)
    dataset.require(("train", "val", "test"))  # missing or corrupt data files fail here, all named at once
    weights = parameter_bytes(lambda: spec.build(model_config, dataset.spec))
    if weights is not None:  # weights, gradients and Adam's two moments
        check_fits(4 * weights, f"a {args.model} with {weights / 4:,.0f} parameters", "choose smaller sizes "
                   "(e.g. --hidden, --latent-dim, --channels)", device)
    seed_everything(train.seed)
    model = spec.build(model_config, dataset.spec)  # refuses unsupported data before anything is written
    trainer_cls.check_options(train, model)
    out = args.out = dist.on_main(lambda: prepare_run_dir(args, train))  # every rank takes part in the broadcast
    with RunLock(out, "training") if dist.is_main else nullcontext():
        restart = args.resume and not (out / CHECKPOINT).is_file()
        if dist.is_main:
            for tmp in remove_stale_temporaries(out):
                print(f"removed {tmp.name}, left by an interrupted write", flush=True)
            if restart:
                print(f"{out} has no {CHECKPOINT} (stopped before its first epoch ended): starting it over with its "
                      "saved options", flush=True)
            write_json(out / CONFIG, run_config(args, train, model_config, saved, dist, device))
        trainer = trainer_cls(model, train, dataset, out, args.model, device, dist, EvaluationJudge())
        if args.resume and not restart:
            trainer.resume()
        elif dist.is_main:
            trainer.metrics.truncate_after(0)  # rows of an attempt that never reached a checkpoint
            trainer.figures.samples(0)
        if trainer.state.epoch >= train.epochs and dist.is_main:
            print(f"{out} is already trained for {trainer.state.epoch} epochs (--epochs {train.epochs}): nothing to "
                  "train; raise --epochs to train longer", flush=True)
        elif dist.is_main:
            print(f"{args.model} on {train.dataset} ({trainer.describe()}) on {device}{dist.summary()}; "
                  f"run directory {out}", flush=True)
        try:
            trainer.fit(on_epoch_end=trainer.figures.on_epoch_end if dist.is_main else None)
        except KeyboardInterrupt:
            raise Interrupted(_kept(out, trainer.state.epoch)) from None
        if not dist.is_main:
            return 0
        trainer.figures.final(trainer.state.epoch, _first_test_images(dataset))
        trainer.final_evaluation(load_run(out, "best", device=device))
    return 0


def _kept(out: Path, epoch: int) -> str:
    """The truth about an interrupted run: what is kept and how to go on."""
    if (out / CHECKPOINT).is_file():
        return (f"interrupted; the checkpoint of epoch {epoch} in {out / CHECKPOINT} is kept: continue with "
                f"--resume --out {out}")
    return f"interrupted before the first checkpoint; --resume --out {out} starts the run over with its options"


def _first_test_images(dataset: Any, n: int = 2) -> torch.Tensor | None:
    """The first test images, for figures that show data (None when the test split cannot be read)."""
    try:
        return dataset.split("test")[:n]
    except DGMError:
        return None


def train(model: str, out: str | Path, *, resume: bool = False, **options: Any):
    """Python entry point (notebooks, scripts): ``train("vae", "runs/x", dataset="digits", epochs=5)``.

    Keyword options are the command-line options with underscores (``latent_dim=2``; tuples for
    multi-valued ones). Resumes when ``resume`` is True; returns the :class:`inference.training.load_run.LoadedRun`
    of ``best.pt``.
    """
    argv = [model, "--out", str(out)] + (["--resume"] if resume else [])
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (tuple, list)):
            argv += [flag, *map(str, value)]
        elif value is not None:
            argv += [flag, str(value)]
    main(argv)
    return load_run(out)


if __name__ == "__main__":
    run_cli(main)
