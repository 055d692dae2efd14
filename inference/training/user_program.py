"""A user's own Pyro program as a story the trainer and the estimators take, with no registration.

A *program* is what a user writes: a ``model(x)`` and a ``guide(x)`` (plain functions, ``nn.Module`` objects, or
bound methods of one), given as a pair ``(model, guide)`` or as one object with ``model`` and ``guide`` methods
(an ``nn.Module`` with both, say). Every per-example site sits inside ``pyro.plate("data", N)`` over the first
dimension of ``x`` (``models.protocols.DATA_PLATE``), as for every estimator.

:class:`UserProgram` wraps it into a ``torch.nn.Module`` whose ``state_dict`` is the program's whole trainable
state, so the SVI trainer, its checkpoints and ``load_run`` treat it like any story:

* parameters of ``nn.Module`` objects: the object given, and the objects whose bound methods ``model`` and
  ``guide`` are (submodules ``user_modules.I``);
* parameters of Pyro's param store (``pyro.param`` sites, ``pyro.module``, ``PyroModule``): the program runs
  inside a param-store scope of its own (``pyro.get_param_store().scope``), so two programs never share a
  name, a second training in one process starts from the program's own initial values, and the store's
  unconstrained tensors are ``nn.Parameter`` objects registered under ``param_store.NAME`` (``.`` written
  ``%2E``). Trained values are read with :meth:`UserProgram.param` (the constrained value).

One run of guide and model on a few training examples at construction creates every parameter (before the
optimiser is built) and gives ``has_latents`` (a latent sample site in the model) and, unless given,
``max_plate_nesting`` (guessed as Pyro's ELBOs guess it). A ``pyro.param`` first reached after that run
would never be trained or saved, so it is refused by name. ``log_marginal(x)``: an optional closed-form log
p(x) per example, (N,) nats, run inside the program's scope (it may read ``pyro.param`` values); a program
object's own ``log_marginal`` method is used when none is given.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pyro
import pyro.poutine as poutine
import torch
from torch import nn

from core.errors import DGMError
from data.in_memory import check_examples
from data.specs import DatasetSpec
from inference.objectives.importance import guess_max_plate_nesting, preserved_rng
from inference.objectives.trace_checks import scored
from models.protocols import ObjectiveRequest

#: what a program may be given as: a pair (model, guide) (guide None: no latent sites), or an object with
#: ``model`` and ``guide`` methods
ProgramLike = Any


@dataclass(frozen=True)
class PyroProgram:
    """A model/guide pair of plain callables with an optional closed-form ``log_marginal(x)`` (N,) nats: the
    way to hand functions (rather than an object with methods) together with their exact marginal."""

    model: Callable
    guide: Callable | None = None
    log_marginal: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass(frozen=True)
class ProgramParts:
    """The callables of a program and the ``nn.Module`` objects holding its parameters."""

    model: Callable
    guide: Callable | None
    owner: Any
    modules: tuple[nn.Module, ...]

    @classmethod
    def of(cls, program: ProgramLike) -> "ProgramParts":
        """From a pair ``(model, guide)`` or an object with ``model`` and ``guide``; a one-line error otherwise."""
        if isinstance(program, UserProgram):
            raise DGMError("this is already a UserProgram; pass the (model, guide) pair or the object it was built "
                           "from")
        if isinstance(program, (tuple, list)):
            if len(program) != 2 or not callable(program[0]) or not (program[1] is None or callable(program[1])):
                raise DGMError("a program is a pair (model, guide) of callables taking the data x (guide None for a "
                               "model without latent sites), or an object with model and guide methods")
            model, guide, owner = program[0], program[1], None
        elif callable(getattr(program, "model", None)) and hasattr(program, "guide"):
            model, guide, owner = program.model, program.guide, program
            if guide is not None and not callable(guide):
                raise DGMError(f"{type(program).__name__}.guide is not callable")
        else:
            raise DGMError(f"a program is a pair (model, guide) or an object with model and guide methods; got "
                           f"{type(program).__name__}")
        modules: list[nn.Module] = []
        for candidate in (owner, _owner_of(model), _owner_of(guide), _owner_of(getattr(owner, "log_marginal", None))):
            if isinstance(candidate, nn.Module) and not any(candidate is m for m in modules):
                modules.append(candidate)
        return cls(model, guide, owner, tuple(modules))

    def default_name(self) -> str:
        """The owner's class name, else the model function's name."""
        if self.owner is not None and not isinstance(self.owner, PyroProgram):
            return type(self.owner).__name__
        return getattr(self.model, "__name__", None) or type(self.model).__name__


def _owner_of(fn: Any) -> Any:
    """The object whose bound method ``fn`` is, or ``fn`` itself when it is an ``nn.Module``."""
    if isinstance(fn, nn.Module):
        return fn
    return fn.__self__ if inspect.ismethod(fn) else None


def escape_param_name(name: str) -> str:
    """A param-store name as an ``nn.Module`` attribute name (which cannot hold ``.``); reversible."""
    return name.replace("%", "%25").replace(".", "%2E")


def unescape_param_name(key: str) -> str:
    return key.replace("%2E", ".").replace("%25", "%")


class UserProgram(nn.Module):
    """A user's Pyro program (module docstring) as a story: ``model(x)``, ``guide(x)``, ``max_plate_nesting``,
    ``has_latents``, ``training_objective()``, ``check_data(x)``, ``has_log_marginal`` / ``log_marginal(x)``.

    ``spec``: the data's event shape and levels (``data.in_memory.tensor_spec``); ``example``: a few training
    examples (n, *spec.shape) the program is run on once to create its parameters; ``objective``: what it is
    trained with (``models.protocols.ObjectiveRequest``: the ELBO by default, ``"iwae"`` with K particles)."""

    def __init__(self, program: ProgramLike, spec: DatasetSpec, example: torch.Tensor, *, name: str | None = None,
                 max_plate_nesting: int | None = None, log_marginal: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 objective: ObjectiveRequest = ObjectiveRequest()):
        super().__init__()
        parts = ProgramParts.of(program)
        self._parts = parts  # a plain attribute: the modules are registered once, below
        self.user_modules = nn.ModuleList(parts.modules)
        self.param_store = nn.Module()
        self._store_state: dict[str, dict[str, Any]] = {"params": {}, "constraints": {}}
        self._initialized = False
        self.spec = spec
        self.program_name = name or parts.default_name()
        owner_marginal = getattr(parts.owner, "log_marginal", None)
        self._log_marginal = log_marginal if log_marginal is not None else (
            owner_marginal if callable(owner_marginal) else None)
        if not isinstance(objective, ObjectiveRequest):
            raise DGMError(f"objective must be an ObjectiveRequest (e.g. ObjectiveRequest('iwae', num_particles=5)), "
                           f"got {type(objective).__name__}")
        self.objective = objective
        if max_plate_nesting is not None and (isinstance(max_plate_nesting, bool) or not isinstance(max_plate_nesting, int)
                                              or max_plate_nesting < 1):
            raise DGMError(f"max_plate_nesting must be an integer >= 1 (the data plate and the plates inside it), got "
                           f"{max_plate_nesting!r}")
        self.check_data(example)
        self.has_latents = self._initialize(example)
        self._register_store_params()
        if not any(True for _ in self.parameters()):
            raise DGMError(f"the program {self.program_name!r} has no parameters to train: none in its nn.Modules and "
                           "no pyro.param site")
        self.max_plate_nesting: int = max_plate_nesting if max_plate_nesting is not None else \
            guess_max_plate_nesting(self.model, self.guide, example)

    # ---- the program, inside its own param-store scope ----------------------------------------
    @contextmanager
    def scope(self) -> Iterator[None]:
        """Run a block with this program's Pyro param store (``pyro.param`` reads and creates its parameters)."""
        with pyro.get_param_store().scope(self._store_state):
            yield
        if self._initialized and len(self._store_state["params"]) != self._registered:
            new = [n for n in self._store_state["params"] if n not in self._names]
            for name in new:  # leave the program as it was, so that the refusal can be mended and retried
                self._store_state["params"].pop(name)
                self._store_state["constraints"].pop(name, None)
            raise DGMError(f"pyro.param site {new[0]!r} was first reached after the program's first run, so it "
                           "would never be trained or saved: reach every pyro.param on every run (declare it before "
                           "any branch)")

    def model(self, x: torch.Tensor) -> Any:
        with self.scope():
            return self._parts.model(x)

    def guide(self, x: torch.Tensor) -> Any:
        if self._parts.guide is None:
            return None
        with self.scope():
            return self._parts.guide(x)

    def traces(self, x: torch.Tensor) -> tuple[Any, Any]:
        """(model trace, guide trace) of one run on ``x``, the model replayed on the guide's values, hidden from
        any enclosing handler and leaving the random stream as it was."""
        with poutine.block(), preserved_rng(x.device):
            guide_trace = poutine.trace(self.guide).get_trace(x)
            model_trace = poutine.trace(poutine.replay(self.model, trace=guide_trace)).get_trace(x)
        return model_trace, guide_trace

    def _initialize(self, example: torch.Tensor) -> bool:
        """Run guide and model once to create every parameter; whether the model has a latent sample site."""
        model_trace, _ = self.traces(example)
        return any(scored(site) and not site["is_observed"] for site in model_trace.nodes.values())

    def _register_store_params(self) -> None:
        """The param store's unconstrained tensors as ``nn.Parameter`` objects of ``param_store`` (those of the
        registered modules, which ``pyro.module`` and ``PyroModule`` put there too, stay theirs)."""
        in_modules = {id(p) for m in self.user_modules for p in m.parameters()}
        params = self._store_state["params"]
        for name, value in list(params.items()):
            if id(value) in in_modules:
                continue
            if not isinstance(value, nn.Parameter):
                value = nn.Parameter(value.detach(), requires_grad=True)  # the same storage, now a parameter
                params[name] = value
            self.param_store.register_parameter(escape_param_name(name), value)
        self._names = set(params)
        self._registered = len(params)
        self._initialized = True

    # ---- what the trainer and the estimators read ---------------------------------------------
    def training_objective(self) -> ObjectiveRequest:
        return self.objective

    def check_data(self, x: torch.Tensor) -> None:
        """Examples (N, *spec.shape) in the support the data was given with (one-line errors)."""
        check_examples(x, self.spec, "the data")

    @property
    def has_log_marginal(self) -> bool:
        return self._log_marginal is not None

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """The program's closed-form log p(x) per example, (N,) nats (refused where none was given)."""
        if self._log_marginal is None:
            raise DGMError(f"the program {self.program_name!r} has no closed-form log_marginal: pass "
                           "log_marginal=f (x -> log p(x), shape (N,)) to use the exact estimator")
        with self.scope():
            return self._log_marginal(x)

    def param(self, name: str) -> torch.Tensor:
        """The constrained value of the program's ``pyro.param`` site ``name`` (detached)."""
        if name not in self._store_state["params"]:
            known = ", ".join(map(repr, self._store_state["params"])) or "none"
            raise DGMError(f"the program {self.program_name!r} has no pyro.param {name!r}; it has {known}")
        with self.scope():
            return pyro.param(name).detach()

    def param_names(self) -> list[str]:
        """Names of the program's param-store sites, in the order they were created."""
        return list(self._store_state["params"])

    def describe(self) -> dict[str, Any]:
        """What ``config.json`` records of the program (its name, modules, param-store sites, plate depth)."""
        return {"name": self.program_name, "modules": [type(m).__name__ for m in self.user_modules],
                "params": self.param_names(), "max_plate_nesting": self.max_plate_nesting,
                "has_latents": self.has_latents, "objective": {"name": self.objective.name,
                                                               "num_particles": self.objective.num_particles,
                                                               "kl_warmup_epochs": self.objective.kl_warmup_epochs},
                "log_marginal": self.has_log_marginal}
