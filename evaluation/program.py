"""What an estimator measures: a Pyro model/guide pair, its plate depth, what one example is, and its owner.

The conventions' estimator signature takes ``model`` and ``guide`` callables. Everything else an
estimator needs is explicit here rather than probed attribute by attribute:

- ``max_plate_nesting``: given (as to Pyro's ELBOs), else that of the object whose bound method ``model``
  is when it declares one (:class:`models.protocols.PlateNesting`, every story does), else guessed from
  one trace as Pyro's ELBOs guess it (``inference.objectives.importance.guess_max_plate_nesting``);
- the unit (``trace_checks.ExampleUnit``): each example (default), each group, or the joint;
- the owner's capabilities, as protocols: its support check (:class:`models.protocols.ChecksData`) and a
  closed-form marginal (:class:`models.protocols.ExactMarginal`).

``evaluate`` builds one from a story with :meth:`Program.of_story`; the estimator functions from their
arguments with :meth:`Program.of`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from core.errors import DGMError
from inference.objectives.importance import guess_max_plate_nesting
from inference.objectives.trace_checks import ExampleUnit
from models.protocols import ChecksData, ExactMarginal, PlateNesting


@dataclass(frozen=True)
class Program:
    """A model/guide pair to measure (module docstring). ``owner``: the object ``model`` belongs to, or None."""

    model: Callable
    guide: Callable | None = None
    max_plate_nesting: int | None = None
    unit: ExampleUnit = field(default_factory=ExampleUnit)
    owner: Any = None

    def __post_init__(self) -> None:
        nesting = self.max_plate_nesting
        if nesting is not None and (isinstance(nesting, bool) or not isinstance(nesting, int) or nesting < 0):
            raise DGMError(f"max_plate_nesting must be an integer >= 0 (the program's plate dimensions), got {nesting!r}")

    @classmethod
    def of(cls, model: Callable, guide: Callable | None, *, max_plate_nesting: int | None = None,
           joint: bool | str = False) -> "Program":
        """From the conventions' arguments: the owner is ``model.__self__`` when ``model`` is a bound method."""
        owner = model.__self__ if inspect.ismethod(model) else None
        return cls(model, guide, max_plate_nesting, ExampleUnit.of(joint), owner)

    @classmethod
    def of_story(cls, story: Any, joint: bool | str = False) -> "Program":
        """A story's model and guide with its declared plate depth."""
        return cls(story.model, story.guide, story.max_plate_nesting, ExampleUnit.of(joint), story)

    def check_data(self, x: Any) -> None:
        """Some examples, and data the owner accepts (one-line errors)."""
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
            raise DGMError("no examples to evaluate (empty split or limit 0)")
        if isinstance(self.owner, ChecksData):
            self.owner.check_data(x)

    def plate_nesting(self, x: torch.Tensor) -> int:
        """max_plate_nesting: given, declared by the owner, or guessed from one trace on ``x``."""
        if self.max_plate_nesting is not None:
            return self.max_plate_nesting
        if isinstance(self.owner, PlateNesting):
            return self.owner.max_plate_nesting
        return guess_max_plate_nesting(self.model, self.guide, x)

    def exact_marginal(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The owner's closed-form log p(x) (N,) where it has one for its data, per example only."""
        if self.unit.per_example and isinstance(self.owner, ExactMarginal) and self.owner.has_log_marginal:
            return self.owner.log_marginal
        return None
