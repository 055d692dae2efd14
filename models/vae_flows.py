"""Normalizing flows in a VAE: flow posteriors q(z | x) (amortised) and flow priors p(z) (learned jointly).

Posterior (``--posterior-flow NAME --flow-length L``): the encoder outputs mu, sigma and features h
(``--flow-context`` of them); a diagonal Gaussian sample is pushed through L amortised layers

    z_0 = mu + sigma * eps,  eps ~ N(0, I)
    z_k = f_k(z_{k-1}; h),   k = 1..L
    log q(z_L | x) = log N(z_0; mu, sigma^2) - sum_k log |det d f_k / d z_{k-1}|

and the log-determinants are those computed in the very pass that drew z_L (each layer's cache), so
no layer is ever inverted: planar and Sylvester layers have no closed-form inverse, and an IAF
inverse would take D sequential passes. Every ``condition(h)`` builds new layer objects, so that
cache lives and dies with one distribution q(z | x).

Prior (``--prior-flow NAME --prior-flow-length L``): p(z) = g # N(0, I) with g = g_L o ... o g_1 our
transforms, log p(z) by the change of variables through their closed-form inverses (one pass each).
The prior scores values it did not draw (the guide's z), so its layers keep no value cache
(``models.flows.base.without_value_cache``): log p(z) is recomputed on every call, never a value
from before the last weight update.

The families are those registered in ``models.flows.vae_families`` (each by its transform's file);
this module reads the registry, so a new family needs no edit here or in ``VAEConfig``:

* the choices of ``--posterior-flow`` / ``--prior-flow`` are ``none`` and the registered names;
* a family's own options come from ``--flow-options KEY=VALUE ...`` (``--prior-flow-options``), parsed
  as JSON values (``null`` or ``none``: unset; anything else unparsable: a string) and type-checked
  against its options dataclass; an option whose field names a ``config_field`` is also set by that
  older VAE option (``--sylvester-columns``, ``--sylvester-reflections``), which ``--flow-options``
  may not contradict;
* generic checks (``--flow-context`` >= 1 for a posterior, the transform's minimum of latent
  dimensions, positive ``--flow-hidden`` for families with networks), then the family's own ``check``.

Every layer's conditioner ends in a zero-initialised linear layer, so a fresh flow prior is exactly
N(0, I). It learns at ``--prior-flow-lr-scale`` (default 0.01) times the learning rate: at the full
rate it tracks the aggregate posterior before the decoder uses z, and the posterior collapses
(``VAE.learning_rate_groups``).

Neither KL(q || p) has a closed form once a flow is involved; our ``AnalyticKLTrace_ELBO`` then uses
the Monte-Carlo term log q(z | x) - log p(z) of the same sample (``inference.objectives.elbo``), and the IWAE
bound and every estimator use log q from the guide's trace the same way.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable

import pyro.distributions as dist
import torch
from torch import nn

from core.config import build_config, option_name
from core.errors import DGMError
from models.flows.base import without_value_cache
from models.flows.choices import unknown_choice
from models.flows.vae_families import FAMILIES, NO_FLOW, FlowFamily, LayerRequest, Role, family_names


@dataclass(frozen=True)
class RoleFields:
    """The ``VAEConfig`` fields that choose one role's flow: family name, length, KEY=VALUE options."""

    name: str
    length: str
    options: str


ROLE_FIELDS: dict[Role, RoleFields] = {
    "posterior": RoleFields("posterior_flow", "flow_length", "flow_options"),
    "prior": RoleFields("prior_flow", "prior_flow_length", "prior_flow_options"),
}


def describe_families(role: Role) -> str:
    """'; choices: none, a, b' for ``--help``, read from the registry when shown."""
    return f"; choices: {', '.join(family_names(role))}"


def describe_options(role: Role) -> str:
    """Each registered family's options (name, help, default) for ``--help``."""
    entries = [f"{family.name}: " + ", ".join(f"{key} ({f.metadata.get('help', '')}; default {f.default!r})"
                                               for key, f in family.option_fields().items())
               for family in sorted(FAMILIES[role].values(), key=lambda fam: fam.name) if family.options]
    return "; " + ("; ".join(entries) if entries else "no registered family takes options")


def parse_value(raw: str) -> Any:
    """A KEY=VALUE value: ``none``/``null`` -> None, else JSON (2, 0.5, true, "s"), else the string itself."""
    if raw.lower() in ("none", "null"):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def option_pairs(pairs: tuple[str, ...] | None, flag: str) -> dict[str, Any]:
    """KEY=VALUE strings -> {key: value}; one-line errors for a missing '=' or a key given twice."""
    values: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise DGMError(f"{flag} takes KEY=VALUE pairs, got {pair!r}")
        if key in values:
            raise DGMError(f"{flag} gives {key!r} twice")
        values[key] = parse_value(raw)
    return values


def family_options(family: FlowFamily, config: Any, pairs: tuple[str, ...] | None,
                   flag: str) -> tuple[Any, Callable[[str], str]]:
    """The family's options dataclass filled from its ``config_field`` aliases and ``flag`` pairs (type-checked),
    and ``label(key)``: how the user gave each option, for error messages."""
    fields = family.option_fields()
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for key, f in fields.items():
        alias = f.metadata.get("config_field")
        if alias in defaults:
            values[key], labels[key] = getattr(config, alias), option_name(alias)
    for key, value in option_pairs(pairs, flag).items():
        if key not in fields:
            raise DGMError(f"{flag}: the {family.role} flow {family.name} has no option {key!r} "
                           f"(its options: {', '.join(fields) or 'none'})")
        try:
            value = getattr(build_config(family.options, {key: value}), key)
        except DGMError as exc:
            raise DGMError(str(exc).replace(option_name(key), f"{flag} {key}")) from None
        alias = fields[key].metadata.get("config_field")
        if alias in defaults and values[key] != defaults[alias] and values[key] != value:
            raise DGMError(f"{flag} {key}={value!r} contradicts {option_name(alias)} {values[key]!r}; give one")
        values[key], labels[key] = value, f"{flag} {key}"
    options = family.options(**values) if family.options else None
    return options, lambda key: labels.get(key, f"{flag} {key}")


def check_request(family: FlowFamily, request: LayerRequest, options: Any, label: Callable[[str], str]) -> None:
    """The generic one-line errors, then the family's own ``check``."""
    flag = option_name(ROLE_FIELDS[family.role].name)
    if family.role == "posterior" and request.context < 1:
        raise DGMError(f"--flow-context must be at least 1 for a flow posterior, got {request.context}")
    if request.latent_dim < family.min_dim:
        raise DGMError(f"{flag} {family.name} needs at least {family.min_dim} latent dimensions (--latent-dim), "
                       f"got {request.latent_dim}")
    if family.uses_hidden and (not request.hidden or any(h < 1 for h in request.hidden)):
        raise DGMError(f"--flow-hidden sizes must be positive, got {request.hidden}")
    if family.check is not None:
        family.check(request, options, label)


def resolve_flow(config: Any, role: Role) -> tuple[FlowFamily, LayerRequest, Any] | None:
    """The family, layer request and options that ``config`` (a ``VAEConfig``) chooses for ``role``, all checked
    (one-line errors); None for no flow (``none`` or length 0)."""
    fields = ROLE_FIELDS[role]
    name, length = getattr(config, fields.name), getattr(config, fields.length)
    if name not in family_names(role):
        raise unknown_choice(option_name(fields.name), name, family_names(role))
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise DGMError(f"{option_name(fields.length)} must be a non-negative integer, got {length!r}")
    if name == NO_FLOW or length == 0:
        return None
    family = FAMILIES[role][name]
    context = config.flow_context if role == "posterior" else 0
    request = LayerRequest(length, config.latent_dim, context, tuple(config.flow_hidden), config.activation)
    options, label = family_options(family, config, getattr(config, fields.options), option_name(fields.options))
    check_request(family, request, options, label)
    return family, request, options


def flow_layers(config: Any, role: Role) -> nn.ModuleList:
    """The L layers (base side first) that ``config`` chooses for ``role``: amortised
    ``ConditionalTransformModule`` s for the posterior, transforms without value caches for the prior."""
    resolved = resolve_flow(config, role)
    if resolved is None:
        return nn.ModuleList()
    family, request, options = resolved
    layers = nn.ModuleList(family.build(request, options))
    return without_value_cache(layers) if role == "prior" else layers


def flow_posterior(loc: torch.Tensor, scale: torch.Tensor, context: torch.Tensor,
                   layers: nn.ModuleList) -> dist.TorchDistribution:
    """q(z | x): N(loc, diag scale^2) (event (L,)) pushed through ``layers`` conditioned on ``context``.

    A ``TransformedDistribution`` whose transforms cache the pass that drew z: ``log_prob`` of its
    own sample reads each layer's input and log-det from that pass (never an inverse). Shapes: loc,
    scale (N, L), context (N, C); batch shape (N,), which ``pyro.plate`` may expand to (K, N).
    """
    base = dist.Normal(loc, scale).to_event(1)
    if not len(layers):
        return base
    return dist.TransformedDistribution(base, [layer.condition(context) for layer in layers])


def flow_prior(base: dist.TorchDistribution, layers: nn.ModuleList) -> dist.TorchDistribution:
    """p(z) = g # base; ``base`` itself when there are no layers."""
    return dist.TransformedDistribution(base, list(layers)) if len(layers) else base
