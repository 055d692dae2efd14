"""Normalizing flows in a VAE: flow posteriors q(z | x) (amortised) and flow priors p(z) (learned jointly).

Posterior (``--posterior-flow NAME --flow-length L``): the encoder outputs mu, sigma and features h
(``--flow-context`` of them); a diagonal Gaussian sample is pushed through L amortised layers

    z_0 = mu + sigma * eps,  eps ~ N(0, I)
    z_k = f_k(z_{k-1}; h),   k = 1..L
    log q(z_L | x) = log N(z_0; mu, sigma^2) - sum_k log |det d f_k / d z_{k-1}|

and the log-determinants are those computed in the very pass that drew z_L (each layer's cache), so
no layer is ever inverted: planar and Sylvester layers have no closed-form inverse, and an IAF
inverse would take D sequential passes. Families (``POSTERIOR_FLOWS``):

    planar                 Rezende & Mohamed (2015): u, w, b = linear(h)          models.flows.amortized_planar
    householder            Tomczak & Welling (2016): L reflections, v_k = linear(h)  (volume preserving)
    sylvester_orthogonal   van den Berg et al. (2018): R, R~, b, Q = linear(h)    models.flows.amortized_sylvester
    sylvester_householder  ... Q a product of ``--sylvester-reflections`` reflections
    sylvester_triangular   ... Q = I or the reversal, alternating
    iaf                    Kingma et al. (2016): MADE(z, h) -> shift, log-scale; orders alternate
    realnvp                affine couplings whose conditioner reads (z_c, h); halves masks alternate

Prior (``--prior-flow NAME --prior-flow-length L``): p(z) = g # N(0, I) with g = g_L o ... o g_1 our
transforms, log p(z) by the change of variables through their closed-form inverses (one pass each):

    realnvp   affine couplings with MLP conditioners, halves masks alternating
    maf       MAF layers (one-pass density, D-pass sampling), MADE orders alternating

Every layer's conditioner ends in a zero-initialised linear layer, so a fresh flow prior is exactly
N(0, I). It learns at ``--prior-flow-lr-scale`` (default 0.01) times the learning rate: at the full
rate it tracks the aggregate posterior before the decoder uses z, and the posterior collapses
(``VAE.learning_rate_groups``).

Neither KL(q || p) has a closed form once a flow is involved; our ``AnalyticKLTrace_ELBO`` then uses
the Monte-Carlo term log q(z | x) - log p(z) of the same sample (``inference.objectives.elbo``), and the IWAE
bound and every estimator use log q from the guide's trace the same way.
"""
from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from core.errors import DGMError
from models.flows.amortized_householder import AmortizedHouseholder
from models.flows.amortized_planar import AmortizedPlanar
from models.flows.amortized_sylvester import AmortizedSylvester
from models.flows.autoregressive import affine_autoregressive
from models.flows.coupling import affine_coupling

POSTERIOR_FLOWS: tuple[str, ...] = ("none", "planar", "iaf", "householder", "sylvester_orthogonal",
                                    "sylvester_householder", "sylvester_triangular", "realnvp")
PRIOR_FLOWS: tuple[str, ...] = ("none", "realnvp", "maf")
#: the transform registry's name (``models.flows.registry``) of the layers each prior family stacks
PRIOR_FLOW_TRANSFORMS: dict[str, str] = {"realnvp": "affine_coupling_halves", "maf": "maf"}
#: flows whose conditioner is a network over z (the others are linear heads of h)
NETWORK_FLOWS: tuple[str, ...] = ("iaf", "realnvp", "maf")


def check_flow_options(name: str, length: int, latent_dim: int, hidden: tuple[int, ...], *, prior: bool,
                       context: int = 1) -> None:
    """One-line errors for an unknown family, a negative length, or sizes the family cannot take."""
    names, option = (PRIOR_FLOWS, "--prior-flow") if prior else (POSTERIOR_FLOWS, "--posterior-flow")
    if name not in names:
        raise DGMError(f"unknown {option} {name!r}; choose one of {', '.join(names)}")
    length_option = "--prior-flow-length" if prior else "--flow-length"
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise DGMError(f"{length_option} must be a non-negative integer, got {length!r}")
    if name == "none" or length == 0:
        return
    if not prior and context < 1:
        raise DGMError(f"--flow-context must be at least 1 for a flow posterior, got {context}")
    if name in ("realnvp", "maf") and latent_dim < 2:
        raise DGMError(f"{option} {name} needs at least 2 latent dimensions (--latent-dim), got {latent_dim}")
    if name in NETWORK_FLOWS:
        if not hidden or any(h < 1 for h in hidden):
            raise DGMError(f"--flow-hidden sizes must be positive, got {hidden}")
        needed = latent_dim if name == "iaf" else latent_dim - 1
        if name in ("iaf", "maf") and min(hidden) < needed:
            raise DGMError(f"--flow-hidden layers of a MADE need at least {needed} units for {latent_dim} latent "
                           f"dimensions, got {tuple(hidden)}")


def posterior_layers(name: str, length: int, latent_dim: int, context: int, hidden: tuple[int, ...],
                     activation: str = "relu", *, sylvester_columns: int | None = None,
                     sylvester_reflections: int = 4) -> nn.ModuleList:
    """The L amortised layers (``ConditionalTransformModule``) of posterior family ``name``, base side first."""
    check_flow_options(name, length, latent_dim, hidden, prior=False, context=context)
    if name == "none" or length == 0:
        return nn.ModuleList()
    if name == "householder":  # L reflections in one layer: the same map as L layers of one reflection
        return nn.ModuleList([AmortizedHouseholder(latent_dim, context, length)])
    orders = (torch.arange(latent_dim), torch.arange(latent_dim - 1, -1, -1))
    layers: list[nn.Module] = []
    for k in range(length):
        if name == "planar":
            layers.append(AmortizedPlanar(latent_dim, context))
        elif name.startswith("sylvester_"):
            variant = name.removeprefix("sylvester_")
            layers.append(AmortizedSylvester(latent_dim, context, variant,  # type: ignore[arg-type]
                                             num_columns=sylvester_columns if variant == "orthogonal" else None,
                                             num_reflections=sylvester_reflections, reverse=k % 2 == 1))
        elif name == "iaf":
            layers.append(affine_autoregressive(latent_dim, hidden, "iaf", orders[k % 2], activation, context))
        else:  # realnvp
            layers.append(affine_coupling((latent_dim,), "halves", k % 2, hidden, activation, context))
    return nn.ModuleList(layers)


def prior_layers(name: str, length: int, latent_dim: int, hidden: tuple[int, ...],
                 activation: str = "relu") -> nn.ModuleList:
    """The L transforms g_1..g_L (base side first) of prior family ``name``."""
    check_flow_options(name, length, latent_dim, hidden, prior=True)
    if name == "none" or length == 0:
        return nn.ModuleList()
    orders = (torch.arange(latent_dim), torch.arange(latent_dim - 1, -1, -1))
    if name == "maf":
        return nn.ModuleList(affine_autoregressive(latent_dim, hidden, "maf", orders[k % 2], activation)
                             for k in range(length))
    return nn.ModuleList(affine_coupling((latent_dim,), "halves", k % 2, hidden, activation) for k in range(length))


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
