"""The generic checks of a VAE flow family (``models.flows.vae_families``) on a built VAE: what every
posterior family and every prior family promises, whatever its layers. ``test_vae_flows.py`` runs them
over every registered family; the extension test runs them on its toy family."""
from __future__ import annotations

import pyro.poutine as poutine
import pytest
import torch

from inference.objectives.elbo import AnalyticKLTrace_ELBO
from models.vae import VAE


def check_log_q_is_the_change_of_variables(vae: VAE, x: torch.Tensor) -> None:
    """log q(z|x) from the sampling pass = log N(z_0; mu, sigma) - log|det dz/dz_0| by autograd, without inverses
    (every layer's ``_inverse`` made to fail while q scores its own sample)."""
    h = vae.encoder_outputs(x)
    q = vae.posterior(h)
    torch.manual_seed(3)
    z = q.rsample()
    with pytest.MonkeyPatch.context() as patch:
        for cls in {type(t) for t in q.transforms}:
            patch.setattr(cls, "_inverse", lambda self, y: pytest.fail("an inverse was computed"))
        log_q = q.log_prob(z)

    loc, scale, context = vae.split_outputs(h)
    torch.manual_seed(3)  # the same base draw, by hand
    z0 = (loc + scale * torch.randn_like(loc)).detach()
    maps = [layer.condition(context) for layer in vae.posterior_flow]

    def flow(v: torch.Tensor, i: int) -> torch.Tensor:  # z_0 -> z_L of example i with the plain _call methods
        out = v
        for t in maps:
            out = t._call(out.expand(x.shape[0], vae.latent_dim))[i]
        return out

    for i in range(x.shape[0]):
        torch.testing.assert_close(flow(z0[i], i), z[i].detach(), rtol=1e-10, atol=1e-10)
        jac = torch.autograd.functional.jacobian(lambda v: flow(v, i), z0[i])
        base = torch.distributions.Normal(loc[i], scale[i]).log_prob(z0[i]).sum()
        expected = base - torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(log_q[i].detach(), expected.detach(), rtol=1e-9, atol=1e-9)


def check_the_guide_trace_scores_z_with_the_flow_density(vae: VAE, x: torch.Tensor) -> None:
    """The log q(z|x) in Pyro's trace (what the ELBO, IWAE and estimators read) is the flow's, not the Gaussian's."""
    trace = poutine.trace(vae.guide).get_trace(x)
    trace.compute_log_prob()
    site = trace.nodes["z"]
    loc, scale, _ = vae.split_outputs(vae.encoder_outputs(x))
    torch.testing.assert_close(site["log_prob"], site["fn"].log_prob(site["value"]))
    gaussian = torch.distributions.Normal(loc, scale).log_prob(site["value"]).sum(-1)
    assert not torch.allclose(site["log_prob"], gaussian)  # the flow changed the density


def check_gradients_reach_the_encoder_through_the_flow(vae: VAE, x: torch.Tensor) -> None:
    """The encoder's context outputs act on the loss only through the flow's parameters: they must get gradients."""
    torch.manual_seed(2)
    AnalyticKLTrace_ELBO().differentiable_loss(vae.model, vae.guide, x).backward()
    for pname, p in vae.posterior_flow.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    last, latent = vae.encoder.net[-1], vae.latent_dim
    context_rows = last.weight.grad[2 * latent:]
    assert context_rows.shape[0] == vae.context_dim > 0
    assert torch.isfinite(context_rows).all() and context_rows.abs().sum() > 0
    assert last.bias.grad[2 * latent:].abs().sum() > 0


POSTERIOR_CHECKS = [check_log_q_is_the_change_of_variables, check_the_guide_trace_scores_z_with_the_flow_density,
                    check_gradients_reach_the_encoder_through_the_flow]


def check_log_p_is_the_change_of_variables(vae: VAE) -> None:
    """log p(z) = log N(g^-1(z)) + log |det d g^-1 / dz| through the plain ``_inverse`` methods, autograd Jacobian."""
    z = torch.randn(5, vae.latent_dim, dtype=torch.float64)
    log_p = vae.prior(z).log_prob(z)

    def inverse(v: torch.Tensor) -> torch.Tensor:  # data -> base through the plain _inverse methods
        for layer in reversed(vae.prior_flow):
            v = layer._inverse(v)
        return v

    for i in range(z.shape[0]):
        jac = torch.autograd.functional.jacobian(inverse, z[i])
        expected = torch.distributions.Normal(0.0, 1.0).log_prob(inverse(z[i])).sum() + torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(log_p[i], expected, rtol=1e-9, atol=1e-9)


def check_log_p_is_never_stale(vae: VAE, kept: bool) -> None:
    """The prior scores z it did not draw: after a weight update, log p of the very tensor scored before is the
    new weights' value (no value cache answers), whether the prior distribution is made again or ``kept``."""
    z = torch.randn(5, vae.latent_dim, dtype=torch.float64)
    kept_prior = vae.prior(z)
    score = kept_prior.log_prob if kept else (lambda v: vae.prior(v).log_prob(v))
    before = score(z).detach()
    with torch.no_grad():
        for p in vae.prior_flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    after = score(z)
    torch.testing.assert_close(after, vae.prior(z).log_prob(z.clone()), rtol=0, atol=0)
    assert not torch.allclose(after, before)
