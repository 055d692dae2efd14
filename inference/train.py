"""``python -m inference.train MODEL --dataset NAME --epochs N ... --out RUN_DIR [--resume]``

Options come from ``TrainConfig`` and the model's config dataclass (``--help`` after the model name
lists them). A fresh run needs an empty or new ``--out``; ``--resume`` continues the run in
``--out`` from its last checkpoint, with its saved options (``--epochs`` may be raised; ``--device``,
``--data-dir``, ``--patience``, ``--val-batch-size`` and ``--precision`` may change; any other differing
option is refused).

``torchrun --nproc-per-node P -m inference.train MODEL ...`` trains on P processes (one per GPU, or
CPU processes with gloo); see ``inference.distributed``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from core.config import OneLineErrorParser, add_dataclass_arguments, build_config, explicit_options, to_jsonable
from core.errors import DGMError, run_cli
from core.run_dir import CHECKPOINT, CONFIG, SCHEMA_VERSION, provenance, read_config, write_json
from core.seeding import seed_everything
from inference.distributed import DistributedContext, distributed_session
from inference.precision import Precision
from inference.train_config import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    import models  # noqa: F401  (fills the registry)
    from models.registry import MODELS

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
    from dataclasses import fields

    return any(f.name == name and f.metadata.get("resumable") for f in fields(TrainConfig))


def _resumable_flags() -> str:
    from dataclasses import fields

    return ", ".join("--" + f.name.replace("_", "-") for f in fields(TrainConfig) if f.metadata.get("resumable"))


def resolve_configs(args: argparse.Namespace, model_config_cls: type) -> tuple[TrainConfig, Any, dict[str, Any] | None]:
    """Fresh run: defaults (the family's own first) + command line. Resume: saved config, checked
    against the explicit options."""
    from models.registry import model_spec

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
    from core.run_dir import load_checkpoint

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
    from models.registry import model_spec

    parser = build_parser()
    args = parser.parse_args(argv)
    spec = model_spec(args.model)
    if spec.trainer != "svi":
        from inference.adversarial_train import main as adversarial_main  # the GAN trainer

        return adversarial_main(args)
    if args.resume and args.out is None:
        raise DGMError("--resume needs --out RUN_DIR")
    if args.resume:
        prepare_run_dir(args, TrainConfig())  # validates before configs are read
    train, model_config, saved = resolve_configs(args, spec.config_cls)
    with distributed_session(train.device) as (dist, device):
        return _train(args, spec, train, model_config, saved, dist, device)


def _train(args: argparse.Namespace, spec: Any, train: TrainConfig, model_config: Any, saved: dict[str, Any] | None,
           dist: DistributedContext, device: torch.device) -> int:
    """Train (every process under torchrun); rank 0 alone writes files, draws figures and evaluates."""
    from data import load_dataset
    from evaluation.evaluate import evaluate_run
    from inference.figures import TrainingFigures
    from inference.trainer import Trainer

    dist.check_batch_size(train.batch_size)
    Precision(train.precision, device)  # refuses fp16 without CUDA before anything is written
    dataset = load_dataset(train.dataset, train.data_dir)
    seed_everything(train.seed)
    model = spec.build(model_config, dataset.spec)  # refuses unsupported data before anything is written
    out = args.out = dist.on_main(lambda: prepare_run_dir(args, train))
    if saved is None:
        config = {"schema_version": SCHEMA_VERSION, "model": args.model, "dataset": train.dataset,
                  "seed": train.seed, "train": to_jsonable(train), "model_options": to_jsonable(model_config),
                  **provenance(device), **dist.describe()}
    else:
        config = saved
        config["train"]["epochs"] = train.epochs
        config.setdefault("resumes", []).append({**provenance(device), **dist.describe(), "epochs": train.epochs})
    if dist.is_main:
        write_json(out / CONFIG, config)
    dataset.split("val")  # fail on missing files before training starts
    trainer = Trainer(model, model.objective(), train, dataset, out, args.model, device, dist)
    figures = TrainingFigures(model, dataset.spec, out, train)
    if args.resume:
        trainer.resume()
    elif dist.is_main:
        figures.samples(0)
    n_params = sum(p.numel() for p in model.parameters())
    if dist.is_main:
        print(f"{args.model} on {train.dataset} ({dataset.spec.dim} dims, {n_params:,} parameters) on {device}"
              f"{dist.summary()}; run directory {out}", flush=True)
    trainer.fit(on_epoch_end=figures.on_epoch_end)
    if not dist.is_main:
        return 0
    figures.final(trainer.state.epoch)
    best = _load_best(out, device)
    estimators = ["elbo"] if model.has_latents else ["exact"]
    evaluate_run(best, "test", estimators, [1], device=device)
    return 0


def _load_best(out: Path, device: torch.device) -> Any:
    from core.load_run import load_run

    return load_run(out, "best", device=device)



def train(model: str, out: str | Path, *, resume: bool = False, **options: Any):
    """Python entry point (notebooks, scripts): ``train("vae", "runs/x", dataset="digits", epochs=5)``.

    Keyword options are the command-line options with underscores (``latent_dim=2``; tuples for
    multi-valued ones). Resumes when ``resume`` is True; returns the :class:`core.load_run.LoadedRun`
    of ``best.pt``.
    """
    from core.load_run import load_run

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
