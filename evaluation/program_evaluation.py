"""Measure a trained user program (``inference.training.program_training.train_program``) with every estimator.

    >>> from evaluation.program_evaluation import evaluate_program
    >>> result = evaluate_program(run, num_samples=(1, 10, 100, 1000))   # run: from train_program or load_run

It is ``evaluation.evaluate.evaluate_run`` on the run's saved data (``data.pt``), so it writes the same files
as ``python -m evaluation.evaluate`` (``eval_<split>.json`` with mean log p(x), NLL, standard error, bits/dim,
seconds, and for K >= 100 the Pareto k-hat summary and ESS; ``eval_<split>_examples.csv`` per example) under
the run's lock. The default estimators are every one that applies to the program: naive Monte Carlo, ELBO and
importance sampling (one pass of K guide samples serves both, so their gap is paired), AIS when the model has
latent sites on the real line to anneal (K chains per example), and ``exact`` when the program gives a
closed-form ``log_marginal(x)`` or has no latent site. Values are per example in nats (log-likelihood sign).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from core.errors import DGMError
from evaluation.ais import AISOptions, AnnealingTarget
from evaluation.evaluate import default_estimators, evaluate_run
from inference.training.load_run import LoadedRun
from inference.training.program_run import is_user_program_run


def ais_applies(model: Any, x: torch.Tensor) -> bool:
    """Whether AIS can run on the program: latent sites on the real line to anneal (one trace on ``x[:1]``)."""
    if not model.has_latents:
        return False
    try:
        with torch.no_grad():
            AnnealingTarget(model.model, x[:1], 1)
    except DGMError:
        return False
    return True


def program_estimators(run: LoadedRun, split: str = "test") -> list[str]:
    """Every estimator that applies to the run's program (module docstring), in the registry's order."""
    names = default_estimators(run.model)
    if ais_applies(run.model, run.dataset.split(split)):
        names.append("ais")
    return names


def evaluate_program(run: LoadedRun, split: str = "test", estimators: Sequence[str] | None = None,
                     num_samples: Sequence[int] = (1, 10, 100, 1000), *, ais: AISOptions | None = None,
                     limit: int | None = None, every: int = 1, seed: int = 0, joint: bool | str = False,
                     device: torch.device | None = None, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Every estimator (default: :func:`program_estimators`) at every K on ``split`` of the run's data; writes and
    returns ``eval_<split>.json`` (``evaluation.evaluate.evaluate_run``).

    ``ais``: AIS's options (annealing steps, leapfrog steps, ...; default ``AISOptions()``); ``limit``, ``every``:
    the examples ``split[::every][:limit]``; ``joint``: the joint log p(x_1..N) of a program with latents shared
    by the examples; ``log``: where the one line per estimate goes (None: nowhere)."""
    if not isinstance(run, LoadedRun) or not is_user_program_run(run.config):
        raise DGMError("evaluate_program takes the run of a user program (train_program's result, or "
                       "load_run(run_dir, program=...)); evaluate a registered model with evaluation.evaluate")
    names = list(estimators) if estimators is not None else program_estimators(run, split)
    options = {"ais": ais} if ais is not None else None
    return evaluate_run(run, split, names, list(num_samples), limit=limit, seed=seed, device=device, every=every,
                        options=options, joint=joint, log=log)
