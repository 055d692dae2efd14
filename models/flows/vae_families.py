"""The registry of VAE flow families: the choices of ``--posterior-flow`` and ``--prior-flow``.

A family stacks L layers of one registered transform (``models.flows.registry``) and is registered
by the file that defines that transform, next to its ``register_transform``::

    register_flow_family(role, name, transform, build, options=..., check=..., uses_hidden=...)

* ``role``: ``"posterior"``, an amortised layer of q(z | x) (the transform's ``conditional`` flag:
  ``condition(h)`` reads the encoder's features h(x); log q of a drawn z reuses the sampling pass,
  so no inverse is needed), or ``"prior"``, a layer of p(z) = g # N(0, I) (unconditional, with a
  closed-form inverse: log p(z) scores the guide's z by the change of variables). Registration
  refuses a transform whose registered capabilities do not fit the role.
* ``build(request, options)``: the L layers, base side first (:class:`LayerRequest`); alternating
  MADE orders or coupling masks between consecutive layers are the family's business.
* ``options``: the family's own options, a dataclass whose fields all have defaults and a ``help``
  (``--flow-options KEY=VALUE`` / ``--prior-flow-options``, ``models.vae_flows``); a field whose
  metadata names a ``config_field`` is also set by that older VAE option (``--sylvester-columns``).
* ``check(request, options, label)``: one-line errors for sizes the family cannot take, before
  anything is built; ``label(key)`` is how the user gave option ``key``, for the message.
* ``uses_hidden``: its networks are sized by ``--flow-hidden``.

A new family therefore needs no edit outside its own file: ``VAEConfig`` lists, validates and builds
whatever is registered here (``models.vae_flows``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from torch import nn

from models.flows.registry import transform_spec

Role = Literal["posterior", "prior"]
#: the choice that means no flow (the Gaussian guide, the N(0, I) prior)
NO_FLOW = "none"


@dataclass(frozen=True)
class LayerRequest:
    """What a family is asked to build: ``length`` L >= 1 layers over ``latent_dim`` D coordinates, with
    ``context`` C encoder features (posteriors; 0 for priors) and ``hidden`` sizes for its networks."""

    length: int
    latent_dim: int
    context: int
    hidden: tuple[int, ...]
    activation: str = "relu"


LayerBuilder = Callable[[LayerRequest, Any], Sequence[nn.Module]]
OptionCheck = Callable[[LayerRequest, Any, Callable[[str], str]], None]


@dataclass(frozen=True)
class FlowFamily:
    """One registered family (see the module docstring)."""

    role: Role
    name: str
    transform: str
    build: LayerBuilder
    options: type | None
    check: OptionCheck | None
    uses_hidden: bool
    description: str

    @property
    def min_dim(self) -> int:
        """The fewest latent dimensions its transform takes."""
        return transform_spec(self.transform).min_dim

    def option_fields(self) -> dict[str, dataclasses.Field]:
        """The fields of its options dataclass by name (none without one)."""
        return {f.name: f for f in dataclasses.fields(self.options)} if self.options else {}


FAMILIES: dict[Role, dict[str, FlowFamily]] = {"posterior": {}, "prior": {}}


def register_flow_family(role: Role, name: str, transform: str, build: LayerBuilder, *, options: type | None = None,
                         check: OptionCheck | None = None, uses_hidden: bool = False, description: str = "") -> None:
    """Record family ``name`` of ``role`` stacking layers of the registered ``transform``."""
    if role not in FAMILIES:
        raise ValueError(f"unknown flow role {role!r}; choose posterior or prior")
    if name == NO_FLOW or name in FAMILIES[role]:
        raise ValueError(f"{role} flow family {name!r} registered twice (or named {NO_FLOW!r})")
    spec = transform_spec(transform)
    fits = spec.conditional if role == "posterior" else spec.closed_form_inverse and not spec.conditional
    if not fits or spec.event != "vector":
        need = "a conditional vector transform" if role == "posterior" else \
            "an unconditional vector transform with a closed-form inverse"
        raise ValueError(f"{role} flow family {name!r}: {transform!r} is not {need}")
    if options is not None and any(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                                   for f in dataclasses.fields(options)):
        raise ValueError(f"{role} flow family {name!r}: every option of {options.__name__} needs a default")
    FAMILIES[role][name] = FlowFamily(role, name, transform, build, options, check, uses_hidden,
                                      description or spec.description)


def family_names(role: Role) -> tuple[str, ...]:
    """The choices of a role: ``none``, then the registered families in alphabetical order."""
    return (NO_FLOW, *sorted(FAMILIES[role]))
