"""The guide cache (``inference.objectives.guide_cache``): the estimators' log-weights are bit for bit those of a
plain trace of the guide in every pass, on the same seed; the encoder runs once per chunk (plus the first pass's
check) instead of once per pass; guides whose sites depend on earlier samples fail the check and keep the
plain trace."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from data.specs import DATASETS
from evaluation.sample_passes import log_weight_chunks, samples_per_pass
from inference.objectives.guide_cache import GuideCache
from inference.objectives.importance import trace_guide
from models.ppca import PPCA, PPCAConfig
from models.vae import VAE, VAEConfig

K = 3000  # passes of samples_per_pass(20, 64) = 819 samples: 4 per chunk of 20 images
VAES = {
    "bernoulli": ("binarized_digits", {}),
    "dequantized_gaussian": ("digits", {"likelihood": "gaussian"}),  # z and the noise u in the guide
    "iaf_posterior": ("binarized_digits", {"posterior_flow": "iaf", "flow_length": 2, "flow_hidden": (16,),
                                           "flow_context": 8}),
}


def _vae(name: str) -> tuple[VAE, torch.Tensor]:
    dataset, options = VAES[name]
    spec = DATASETS[dataset]
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=3, hidden=(16,), **options), spec).eval()
    with torch.no_grad():
        x = vae.sample(40)
    return vae, x


def _weights(model, guide, x: torch.Tensor, cache: bool, seed: int = 5) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.cat([lw for _, lw in log_weight_chunks(model, guide, x, K, chunk_size=20, cache_guide=cache)])


@pytest.mark.parametrize("name", list(VAES))
def test_cached_log_weights_equal_the_plain_traces_bit_for_bit(name: str):
    vae, x = _vae(name)
    calls = {"n": 0}
    hook = vae.encoder.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    try:
        plain = _weights(vae.model, vae.guide, x, cache=False)
        uncached_calls, calls["n"] = calls["n"], 0
        cached = _weights(vae.model, vae.guide, x, cache=True)
    finally:
        hook.remove()
    assert torch.equal(cached, plain)
    assert uncached_calls == 2 * -(-K // samples_per_pass(20, 64)) == 8  # two chunks of 4 passes
    assert calls["n"] == 3  # the first chunk's template and checked first pass, the second chunk's template


def test_a_guide_whose_site_depends_on_an_earlier_sample_is_not_cached():
    """PPCA of images: z ~ q(z | x + u) depends on the noise u drawn just before it."""
    model = PPCA(PPCAConfig(latent_dim=2), DATASETS["digits"]).double()
    torch.manual_seed(0)
    x = model.sample(8)
    cache = GuideCache(model.guide, x, -2)
    assert not cache.matches(trace_guide(model.guide, x, 5, -2))
    assert torch.equal(_weights(model.model, model.guide, x, cache=True), _weights(model.model, model.guide, x, cache=False))


def test_a_hierarchical_user_guide_is_not_cached_and_a_mean_field_one_is():
    def hierarchical(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", dist.Normal(x, 1.0))
            pyro.sample("b", dist.Normal(a, 1.0))

    def mean_field(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(x, 1.0))
            pyro.sample("b", dist.Normal(2 * x, 1.0))

    x = torch.randn(6)
    for guide, cacheable in ((hierarchical, False), (mean_field, True)):
        torch.manual_seed(1)
        assert GuideCache(guide, x, -2).matches(trace_guide(guide, x, 4, -2)) is cacheable


def test_the_cache_leaves_the_random_stream_where_it_was():
    vae, x = _vae("bernoulli")
    torch.manual_seed(3)
    GuideCache(vae.guide, x, -2)
    after = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(3))
