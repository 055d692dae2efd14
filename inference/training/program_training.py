"""Train a user's own Pyro program with the project's trainer, with no registration (issue #16).

    >>> from inference.training.program_training import train_program
    >>> run = train_program((model, guide), x, "runs/mine", TrainConfig(epochs=20, batch_size=64, lr=1e-2))

``program`` is a pair ``(model, guide)`` of callables taking the data batch ``x`` (functions, ``nn.Module``
objects or their bound methods), an object with ``model`` and ``guide`` methods, or a
``inference.training.user_program.PyroProgram`` (functions with a closed-form ``log_marginal``). Its parameters
may live in ``nn.Module`` attributes and in Pyro's param store (``pyro.param``): both are trained, checkpointed
and restored (``inference.training.user_program``). ``data``: a tensor (N, ...) (cut into train/val/test by
``data.in_memory.tensor_dataset``; ``levels`` for discrete data) or an ``InMemoryDataset``.

Each step minimises ``objective.differentiable_loss(model, guide, x) / B`` (the one-sample ELBO with analytic
Gaussian KL where it applies, or the objective asked for) with Adam, the SVI trainer of every story
(``inference.training.svi_trainer``): the same run directory (``config.json``, ``metrics.csv``,
``checkpoint.pt``, ``best.pt``, ``curves.png``, plus ``data.pt``: ``inference.training.program_run``), the same
progress bar, the run directory's lock, and the command line's one-line refusals (a non-empty ``out`` without
``resume=True``, ``resume=True`` without a run, options that differ from the saved run's, a second writer).
``resume=True`` continues from ``checkpoint.pt`` with the saved options and RNG states, so the result equals an
uninterrupted run bit for bit; ``epochs`` may be raised. Returns the ``LoadedRun`` of ``best.pt``
(``load_run(out, program=program)``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from core.config import to_jsonable
from core.device import resolve_device
from core.errors import DGMError, Interrupted
from core.paths import check_output_dir
from core.run_dir import (CHECKPOINT, CONFIG, SCHEMA_VERSION, load_checkpoint, provenance, read_config,
                          remove_stale_temporaries, write_json)
from core.run_lock import LOCK_FILES, RunLock
from core.seeding import seed_everything
from data.in_memory import InMemoryDataset, dataset_fingerprint, save_dataset, tensor_dataset
from inference.objectives.trace_checks import check_guide_covers
from inference.training.config import TrainConfig
from inference.training.distributed import SINGLE_PROCESS
from inference.training.load_run import LoadedRun, load_run
from inference.training.precision import Precision
from inference.training.program_run import (DATA_FILE, USER_PROGRAM_KEY, build_program, checked_train_config,
                                            data_record, is_user_program_run, objective_of, saved_data,
                                            saved_train_config)
from inference.training.svi_trainer import SVITrainer
from inference.training.user_program import ProgramLike, UserProgram
from models.protocols import ObjectiveRequest


def _resumable(name: str) -> bool:
    return any(f.name == name and f.metadata.get("resumable") for f in dataclasses.fields(TrainConfig))


def resumed_config(saved: TrainConfig, given: TrainConfig | None, epochs: int | None, already: int) -> TrainConfig:
    """The saved options with the resumable ones of ``given`` (epochs, data_dir, device, patience,
    val_batch_size, precision) and ``epochs``; a one-line refusal for any other difference, as the command
    line's ``--resume``."""
    merged = saved
    if given is not None:
        for f in dataclasses.fields(TrainConfig):
            if f.name == "dataset":
                continue
            old, new = getattr(saved, f.name), getattr(given, f.name)
            if _resumable(f.name):
                merged = dataclasses.replace(merged, **{f.name: new})
            elif old != new:
                allowed = ", ".join(g.name for g in dataclasses.fields(TrainConfig) if g.metadata.get("resumable"))
                raise DGMError(f"config.{f.name} {new!r} differs from the saved run's {old!r}; a resumed run keeps its "
                               f"options (only {allowed} may change): pass config=None to resume with the saved ones")
    if epochs is not None:
        merged = dataclasses.replace(merged, epochs=epochs)
    if merged.epochs < already:
        raise DGMError(f"epochs={merged.epochs} is below the {already} epochs already trained")
    return merged


def _last_epoch(out: Path) -> int:
    return int(load_checkpoint(out / CHECKPOINT)["epoch"]) if (out / CHECKPOINT).is_file() else 0


def _check_out(out: Path, resume: bool) -> Path:
    """A fresh run needs a new or empty directory; ``resume=True`` needs a run directory (one-line errors)."""
    if out.exists() and not out.is_dir():
        raise DGMError(f"out={out} is a file, not a run directory")
    if resume:
        if not (out / CONFIG).is_file():
            raise DGMError(f"resume=True: {out} is not a run directory (no {CONFIG})")
    elif out.exists() and any(p.name not in LOCK_FILES for p in out.iterdir()):
        unfinished = (out / CONFIG).is_file() and not (out / CHECKPOINT).is_file()
        raise DGMError(f"{out} is not empty" + (" (a run stopped before its first checkpoint)" if unfinished else "")
                       + "; pass resume=True to continue that run or choose another out")
    return check_output_dir(out, "out")


def _as_dataset(data: InMemoryDataset | torch.Tensor, levels: int | None) -> InMemoryDataset:
    if isinstance(data, InMemoryDataset):
        return data
    if isinstance(data, torch.Tensor):
        return tensor_dataset(data, levels)
    raise DGMError(f"data must be a tensor (N, ...) or a data.in_memory.InMemoryDataset, got {type(data).__name__}")


def _check_program_options(saved: dict[str, Any], max_plate_nesting: int | None,
                           objective: ObjectiveRequest | None) -> None:
    """A resumed program keeps its plate depth and objective."""
    if max_plate_nesting is not None and max_plate_nesting != saved.get("max_plate_nesting"):
        raise DGMError(f"max_plate_nesting={max_plate_nesting} differs from the saved run's "
                       f"{saved.get('max_plate_nesting')}; a resumed run keeps its program options")
    if objective is not None and objective != objective_of(saved):
        raise DGMError(f"objective {objective} differs from the saved run's {objective_of(saved)}; a resumed run keeps "
                       "its program options")


def check_program(program: UserProgram, x: torch.Tensor) -> None:
    """What training needs of the program's traces, before anything is written: every model latent sampled by
    the guide (``inference.objectives.trace_checks``, one line naming the site)."""
    with torch.no_grad():
        model_trace, guide_trace = program.traces(x)
    check_guide_covers(model_trace, guide_trace, hint=" (training draws every latent from the guide: the ELBO does not "
                                                 "enumerate; for the estimators alone a discrete model site may be "
                                                 "marked infer={'enumerate': 'parallel'})")


def train_program(program: ProgramLike, data: InMemoryDataset | torch.Tensor | None, out: str | Path,
                  config: TrainConfig | None = None, *, epochs: int | None = None, resume: bool = False,
                  name: str | None = None, levels: int | None = None, max_plate_nesting: int | None = None,
                  objective: ObjectiveRequest | None = None, progress: bool = True) -> LoadedRun:
    """Train ``program`` on ``data`` into the run directory ``out`` (module docstring); the ``LoadedRun`` of
    ``best.pt``.

    ``config``: the training options (``TrainConfig``; its ``dataset`` is ignored: the data are given);
    ``epochs`` overrides ``config.epochs``. ``resume=True``: continue ``out`` with its saved options and data
    (``data`` may be None; given, it must equal the saved data). ``name``: the program's name in
    ``config.json`` (default: the owner's class name or the model function's name). ``levels``: the number of
    integer levels of tensor ``data`` (None: real-valued). ``max_plate_nesting``: as Pyro's ELBOs take it
    (default: guessed from one trace). ``objective``: ``ObjectiveRequest`` (default: the one-sample ELBO).
    ``progress``: the progress bar and one line per epoch (False: only the closing summary line)."""
    out = _check_out(Path(out), resume)
    saved = read_config(out) if resume else None
    if saved is not None:
        if not is_user_program_run(saved):
            raise DGMError(f"{out} holds the registered model {saved['model']!r}, not a user program: resume it with "
                           f"python -m inference.train {saved['model']} --resume --out {out}")
        dataset = saved_data(out, saved)
        if data is not None and dataset_fingerprint(_as_dataset(data, levels)) != dataset_fingerprint(dataset):
            raise DGMError(f"the data given differ from those of the saved run in {out / DATA_FILE}; a resumed run "
                           "keeps its data (pass data=None to use them)")
        options = saved["model_options"]
        _check_program_options(options, max_plate_nesting, objective)
        train = resumed_config(saved_train_config(saved), config, epochs, _last_epoch(out))
        name, max_plate_nesting, objective = saved["model"], options.get("max_plate_nesting"), objective_of(options)
    else:
        if data is None:
            raise DGMError("data is None: a fresh run needs data (a tensor (N, ...) or an InMemoryDataset)")
        dataset = _as_dataset(data, levels)
        train = config if config is not None else TrainConfig()
        if epochs is not None:
            train = dataclasses.replace(train, epochs=epochs)
    train = checked_train_config(train, dataset.name)
    dataset.require(("train", "val"))
    device = resolve_device(train.device)
    Precision(train.precision, device)  # refuses fp16 without CUDA before anything is written
    seed_everything(train.seed)
    story = build_program(program, dataset, name=name, max_plate_nesting=max_plate_nesting,
                          objective=objective or ObjectiveRequest())
    check_program(story, dataset.split("train")[:2])
    SVITrainer.check_options(train, story)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DGMError(f"out={out} cannot be created: {exc.strerror or exc}") from None
    with RunLock(out, "training"):
        restart = resume and not (out / CHECKPOINT).is_file()
        for tmp in remove_stale_temporaries(out):
            print(f"removed {tmp.name}, left by an interrupted write", flush=True)
        if saved is None:
            save_dataset(dataset, out / DATA_FILE)
        write_json(out / CONFIG, _run_config(story, train, dataset, saved, device))
        trainer = SVITrainer(story, train, dataset, out, story.program_name, device, SINGLE_PROCESS)
        trainer.verbose = progress
        if resume and not restart:
            trainer.resume()
        else:
            trainer.metrics.truncate_after(0)
        if trainer.state.epoch >= train.epochs:
            print(f"{out} is already trained for {trainer.state.epoch} epochs (epochs={train.epochs}): nothing to "
                  "train; raise epochs to train longer", flush=True)
        elif progress:
            print(f"{story.program_name} ({trainer.describe()}) on {device}; run directory {out}", flush=True)
        try:
            trainer.fit()
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted; the last checkpoint in {out} is kept: continue with "
                              f"train_program(..., {str(out)!r}, resume=True)") from None
        trainer.figures.curves()
        state = trainer.state
        objective_name = "val_elbo" if story.has_latents else "val_log_likelihood"
        print(f"{story.program_name}: {state.epoch} epochs, {state.step} steps; best epoch {state.best_epoch} "
              f"({objective_name} {state.best_val:.4f} nats per example); run directory {out}", flush=True)
    return load_run(out, "best", device=device, program=program)


def _run_config(story: UserProgram, train: TrainConfig, dataset: InMemoryDataset, saved: dict[str, Any] | None,
                device: torch.device) -> dict[str, Any]:
    """``config.json``: fresh (the conventions' entries, the program, its data) or the saved one with this
    resumption noted."""
    if saved is None:
        return {"schema_version": SCHEMA_VERSION, "model": story.program_name, "dataset": dataset.name,
                "seed": train.seed, USER_PROGRAM_KEY: True, "train": to_jsonable(train),
                "model_options": story.describe(), "data": data_record(dataset), **provenance(device)}
    saved["train"] = to_jsonable(train)
    saved.setdefault("resumes", []).append({**provenance(device), "epochs": train.epochs})
    return saved
