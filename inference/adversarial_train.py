"""``python -m inference.train gan ...``: the command-line half of adversarial training.

``inference.train`` parses the command line (options from ``TrainConfig`` and ``GANConfig``) and
hands models whose registry entry says ``trainer="adversarial"`` to :func:`main` here, which shares
its option resolution and run-directory rules (``resolve_configs``, ``prepare_run_dir``: a fresh
run needs an empty ``--out``; ``--resume`` keeps the saved options). After training it writes the
figures and ``sample_quality_test.json`` (FD, KID and class histogram of the best checkpoint's
samples against the test split, with the data set's floor).
"""
from __future__ import annotations

import argparse
from typing import Any

from core.config import to_jsonable
from core.errors import DGMError
from core.run_dir import CONFIG, SCHEMA_VERSION, provenance, write_json
from core.seeding import seed_everything
from inference.distributed import DistributedContext, distributed_session
from inference.precision import Precision
from inference.train_config import TrainConfig


def main(args: argparse.Namespace) -> int:
    """Train the adversarial model named by ``args.model`` as the parsed command line says."""
    from inference.train import prepare_run_dir, resolve_configs
    from models.registry import model_spec

    spec = model_spec(args.model)
    if args.resume and args.out is None:
        raise DGMError("--resume needs --out RUN_DIR")
    if args.resume:
        prepare_run_dir(args, TrainConfig())  # validates before configs are read
    train, model_config, saved = resolve_configs(args, spec.config_cls)
    if train.patience and not model_config.val_samples:
        raise DGMError("--patience needs a validation criterion: set --val-samples above 0")
    with distributed_session(train.device) as (dist, device):
        return _train(args, spec, train, model_config, saved, dist, device)


def _train(args: argparse.Namespace, spec: Any, train: TrainConfig, model_config: Any, saved: dict | None,
           dist: DistributedContext, device: Any) -> int:
    """Train (every process under torchrun); rank 0 alone validates, writes files and scores samples."""
    from core.load_run import load_run
    from data import load_dataset
    from evaluation.classifier import get_classifier
    from evaluation.sample_quality import FeatureReference, run_sample_quality
    from inference.adversarial_figures import GANFigures
    from inference.adversarial_trainer import AdversarialTrainer
    from inference.train import prepare_run_dir

    dist.check_batch_size(train.batch_size)
    Precision(train.precision, device)  # refuses fp16 without CUDA before anything is written
    dataset = load_dataset(train.dataset, train.data_dir)
    seed_everything(train.seed)
    model = spec.build(model_config, dataset.spec)
    x_val = dataset.split("val")  # fail on missing files before anything is written
    out = args.out = dist.on_main(lambda: prepare_run_dir(args, train))
    config = _config(args, train, model_config, saved, device)
    (config if saved is None else config["resumes"][-1]).update(dist.describe())  # world size, backend
    reference = figures = None
    if dist.is_main:
        write_json(out / CONFIG, config)
        # the classifier is trained once per family if missing; its training keeps the global RNG untouched
        classifier = get_classifier(train.dataset, data_dir=train.data_dir)
        if model_config.val_samples:
            n_val = min(model_config.val_samples, x_val.shape[0])
            reference = FeatureReference.of(classifier, x_val[:n_val], dataset.spec.levels, device)
        figures = GANFigures(model, dataset.spec, out, train, classifier)
    trainer = AdversarialTrainer(model, train, dataset, out, args.model, device, reference, dist)
    if args.resume:
        trainer.resume()
    elif figures is not None:
        figures.samples(0)
    if not dist.is_main:
        trainer.fit()
        return 0
    n_g = sum(p.numel() for p in model.generator.parameters())
    n_d = sum(p.numel() for p in model.discriminator.parameters())
    print(f"{args.model} ({model_config.arch}, {model_config.loss} loss) on {train.dataset} on {device}"
          f"{dist.summary()}: generator {n_g:,} and discriminator {n_d:,} parameters; run directory {out}", flush=True)
    trainer.fit(on_epoch_end=figures.on_epoch_end)
    figures.final(trainer.state.epoch)
    best = load_run(out, "best", device=device)
    result = run_sample_quality(best, device=device)
    s, f = result["samples"], result["floor"]
    print(f"test sample quality of best.pt (epoch {best.epoch}, n={s['n']}): FD {s['fd']:.3f} "
          f"(floor {f['fd']:.3f}), KID {s['kid']:.5f} (floor {f['kid']:.5f}), class entropy "
          f"{s['class_entropy']:.3f} nats (floor {f['class_entropy']:.3f})", flush=True)
    return 0


def _config(args: argparse.Namespace, train: TrainConfig, model_config: Any, saved: dict | None,
            device: Any) -> dict[str, Any]:
    """``config.json``: fresh (every resolved option and provenance) or the saved one with the resume noted."""
    if saved is None:
        return {"schema_version": SCHEMA_VERSION, "model": args.model, "dataset": train.dataset,
                "seed": train.seed, "train": to_jsonable(train), "model_options": to_jsonable(model_config),
                **provenance(device)}
    saved["train"]["epochs"] = train.epochs
    saved.setdefault("resumes", []).append({**provenance(device), "epochs": train.epochs})
    return saved
