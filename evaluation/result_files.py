"""Where an evaluation's results live in a run directory, one pair of files per subset of examples.

    eval_<split>.json, eval_<split>_examples.csv                the whole split (shared/CONVENTIONS.md)
    eval_<split>_every<S>[_limit<N>][_joint...].json / .csv     a subset (``--every S``, ``--limit N``) or a
                                                                joint unit (``--joint``)

So an evaluation of every 20th image never replaces the trainer's evaluation of the whole split, and two
subsets never mix; readers (``compare``, the main job) name the subset they want.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import DGMError


def subset_key(every: int = 1, limit: int | None = None, joint: bool | str = False) -> str:
    """'' for the whole split, else '_every20_limit500', '_joint', '_jointgroups', ..."""
    key = (f"_every{every}" if every != 1 else "") + (f"_limit{limit}" if limit is not None else "")
    if joint:
        key += "_joint" if joint is True else f"_joint{joint}"
    return key


def result_paths(run_dir: str | Path, split: str, every: int = 1, limit: int | None = None,
                 joint: bool | str = False) -> tuple[Path, Path]:
    """(summary JSON, per-example CSV) of one subset of ``split``."""
    stem = f"eval_{split}{subset_key(every, limit, joint)}"
    return Path(run_dir) / f"{stem}.json", Path(run_dir) / f"{stem}_examples.csv"


def find_result(run_dir: str | Path, split: str, every: int | None = None, limit: int | None = None,
                joint: bool | str = False) -> tuple[Path, Path]:
    """The result files a reader asked for; with ``every`` unset, the whole split's or, when that is absent,
    the only subset there is (a one-line error naming the choices when there are several)."""
    run_dir = Path(run_dir)
    if every is not None or limit is not None:
        return result_paths(run_dir, split, every or 1, limit, joint)
    whole = result_paths(run_dir, split, 1, None, joint)
    if whole[0].is_file():
        return whole
    subsets = sorted(p for p in run_dir.glob(f"eval_{split}_*.json") if "_examples" not in p.name)
    if len(subsets) == 1:
        return subsets[0], subsets[0].with_name(subsets[0].stem + "_examples.csv")
    if subsets:
        raise DGMError(f"{run_dir} holds evaluations of several subsets of the {split} split "
                       f"({', '.join(p.name for p in subsets)}); name one with --every/--limit")
    return whole
