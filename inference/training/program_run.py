"""What the run directory of a user's own program adds to the conventions' layout, and its rebuilding.

A user program is in no registry, so its run directory records what is needed to rebuild it around the
user's code (``load_run(run_dir, program=...)``):

* ``config.json``: ``"user_program": true``, ``model`` (the program's name), ``dataset`` (the in-memory data's
  name), ``train`` (the resolved ``TrainConfig``), ``model_options`` (the program's name, modules, param-store
  sites, ``max_plate_nesting``, ``has_latents``, training objective: ``UserProgram.describe``), ``data`` (event
  shape, levels, split sizes, SHA-256 fingerprint);
* ``data.pt``: the train/val/test splits (``data.in_memory.save_dataset``), so that evaluation, resumption and
  reloading see the same examples; checked against the fingerprint when read.

The rest (``metrics.csv``, ``checkpoint.pt``, ``best.pt``, evaluation files) is the conventions' own.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from core.errors import DGMError
from data.in_memory import InMemoryDataset, dataset_fingerprint, load_saved_dataset
from data.specs import DATASETS
from inference.training.config import TrainConfig
from inference.training.user_program import ProgramLike, UserProgram
from models.protocols import ObjectiveRequest

#: the config.json entry that marks a user program's run
USER_PROGRAM_KEY = "user_program"
#: the data of a user program's run
DATA_FILE = "data.pt"
#: examples the program is first run on to create its parameters
INIT_EXAMPLES = 16


def is_user_program_run(config: dict[str, Any]) -> bool:
    return bool(config.get(USER_PROGRAM_KEY))


def checked_train_config(config: TrainConfig, dataset_name: str) -> TrainConfig:
    """``config`` with the in-memory data's name as its data set, every other option validated as for the
    command line (one-line errors)."""
    if not isinstance(config, TrainConfig):
        raise DGMError(f"config must be an inference.training.config.TrainConfig, got {type(config).__name__}")
    dataclasses.replace(config, dataset=next(iter(DATASETS))).validate()  # all checks but the registry's names
    return dataclasses.replace(config, dataset=dataset_name)


def saved_train_config(config: dict[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` recorded in a user program's ``config.json``."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        return TrainConfig(**{k: v for k, v in config["train"].items() if k in names})
    except TypeError as exc:
        raise DGMError(f"config.json of this run is damaged: its train options do not fit ({exc})") from None


def data_record(dataset: InMemoryDataset) -> dict[str, Any]:
    """``config.json``'s ``data`` entry."""
    spec = dataset.spec
    return {"name": spec.name, "shape": list(spec.shape), "levels": spec.levels, "splits": list(spec.splits),
            "sha256": dataset_fingerprint(dataset)}


def saved_data(run_dir: Path, config: dict[str, Any]) -> InMemoryDataset:
    """``data.pt`` of a user program's run, checked against the fingerprint in ``config.json``."""
    path = Path(run_dir) / DATA_FILE
    dataset = load_saved_dataset(path)
    if dataset_fingerprint(dataset) != config.get("data", {}).get("sha256"):
        raise DGMError(f"{path} does not hold the data recorded in {Path(run_dir) / 'config.json'} (another "
                       "fingerprint); restore the run's data.pt")
    return dataset


def objective_of(options: dict[str, Any]) -> ObjectiveRequest:
    """The training objective recorded in ``model_options``."""
    return ObjectiveRequest(**options.get("objective", {}))


def build_program(program: ProgramLike, dataset: InMemoryDataset, *, name: str | None = None,
                  max_plate_nesting: int | None = None, objective: ObjectiveRequest = ObjectiveRequest()) -> UserProgram:
    """The :class:`UserProgram` of ``program`` on ``dataset``, first run on its first training examples."""
    example = dataset.split("train")[:INIT_EXAMPLES]
    return UserProgram(program, dataset.spec, example, name=name, max_plate_nesting=max_plate_nesting,
                       objective=objective)


def rebuild_program(run_dir: Path, config: dict[str, Any], program: ProgramLike) -> tuple[UserProgram, TrainConfig,
                                                                                         InMemoryDataset]:
    """(program, train config, data) of a user program's run, untrained: the caller loads a checkpoint."""
    options = config["model_options"]
    dataset = saved_data(run_dir, config)
    story = build_program(program, dataset, name=config["model"], max_plate_nesting=options.get("max_plate_nesting"),
                          objective=objective_of(options))
    return story, saved_train_config(config), dataset
