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

import argparse
from pathlib import Path
from typing import Any

import torch

from dataclasses import fields

from core.config import OneLineErrorParser, add_dataclass_arguments, build_config, explicit_options, to_jsonable
from core.errors import DGMError, run_cli
from core.run_dir import CHECKPOINT, CONFIG, SCHEMA_VERSION, load_checkpoint, provenance, read_config, write_json
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
    return int(load_checkpoint(run_dir / CHECKPOINT)["epoch"])


def prepare_run_dir(args: argparse.Namespace, train: TrainConfig) -> Path:
    out = args.out or Path("runs") / f"{args.model}-{train.dataset}-seed{train.seed}"
    args.out = out
    if args.resume:
        if not (out / CONFIG).is_file():
            raise DGMError(f"--resume: {out} is not a run directory (no {CONFIG})")
        if not (out / CHECKPOINT).is_file():
            raise DGMError(f"--resume: {out} has no {CHECKPOINT} to resume from")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DGMError(f"{out} is not empty; pass --resume to continue that run or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    spec = model_spec(args.model)
    if args.resume and args.out is None:
        raise DGMError("--resume needs --out RUN_DIR")
    if args.resume:
        prepare_run_dir(args, TrainConfig())  # validates before configs are read
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
    """Train (every process under torchrun); rank 0 alone writes files, draws figures and evaluates."""
    trainer_cls = trainer_spec(spec.trainer).cls
    dist.check_batch_size(train.batch_size)
    Precision(train.precision, device)  # refuses fp16 without CUDA before anything is written
    dataset = load_dataset(train.dataset, train.data_dir)
    seed_everything(train.seed)
    model = spec.build(model_config, dataset.spec)  # refuses unsupported data before anything is written
    trainer_cls.check_options(train, model)
    out = args.out = dist.on_main(lambda: prepare_run_dir(args, train))
    if dist.is_main:
        write_json(out / CONFIG, run_config(args, train, model_config, saved, dist, device))
    dataset.split("val")  # fail on missing files before training starts
    trainer = trainer_cls(model, train, dataset, out, args.model, device, dist, EvaluationJudge())
    if args.resume:
        trainer.resume()
    elif dist.is_main:
        trainer.figures.samples(0)
    if dist.is_main:
        print(f"{args.model} on {train.dataset} ({trainer.describe()}) on {device}{dist.summary()}; "
              f"run directory {out}", flush=True)
    trainer.fit(on_epoch_end=trainer.figures.on_epoch_end if dist.is_main else None)
    if not dist.is_main:
        return 0
    trainer.figures.final(trainer.state.epoch, _first_test_images(dataset))
    trainer.final_evaluation(load_run(out, "best", device=device))
    return 0


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
