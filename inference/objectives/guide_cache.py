"""q(z | x) of a chunk of examples built once, then sampled for every pass of importance samples.

An estimator at K = 1000 draws its samples in passes of K_pass (memory), and a plain trace of the guide
in every pass reruns its networks: 77 encoder runs for 100 MNIST images at K = 1000 where one would do.
:class:`GuideCache` traces the guide once per chunk under a particle plate of size 1 (every site's
distribution then has batch shape (1, n, ...)) and draws each pass's values from
``fn.expand((K_pass, n, ...))``, site by site in the guide's order, by calling the distribution as
Pyro's ``sample`` does. A pass therefore consumes the random stream exactly as a plain trace of the
guide would: on the same seed the same values and the same log q, bit for bit. The one trace it costs
leaves the random stream where it was.

When that is valid: when no guide site's distribution depends on values sampled earlier in the pass
(mean-field guides, a flow posterior conditioned on x, dequantization noise independent of z) or on
randomness outside the sites (dropout in training mode). That is checked, not assumed
(:meth:`GuideCache.matches`): on the first pass the guide is traced as usual, and every site's log q at
that pass's values must equal, bit for bit, the log q of the cached distribution (built from one other
draw of the upstream sites) at the same values. A hierarchical guide, z_2 ~ q(z_2 | z_1, x), fails and
keeps the plain trace in every pass. Only the guide's sample sites are reproduced, not its return value
or side effects (the estimators use neither).
"""
from __future__ import annotations

from typing import Any, Callable

import pyro.poutine as poutine
import torch

from inference.objectives.importance import preserved_rng, vectorized
from inference.objectives.trace_checks import masked, scored_sites, site_log_prob


class GuideCache:
    """The guide's distributions for the examples ``x``, with particles at ``dim`` (module docstring)."""

    def __init__(self, guide: Callable, x: torch.Tensor, dim: int):
        self.dim = dim
        with preserved_rng(x.device):
            self.template = poutine.trace(vectorized(guide, 1, dim)).get_trace(x)
        self.sites = [name for name, _ in scored_sites(self.template)]

    def _expanded(self, name: str, num_samples: int) -> Any:
        """The cached distribution of site ``name`` with ``num_samples`` particles."""
        fn = self.template.nodes[name]["fn"]
        batch = list(fn.batch_shape)
        batch[len(batch) + self.dim] = num_samples
        return fn.expand(torch.Size(batch))

    def matches(self, trace: Any) -> bool:
        """Whether a plain trace of the guide (the first pass) has the cached distributions: the same sites in
        the same order, each with log q at the trace's values bit for bit equal to the cached one's."""
        if [name for name, _ in scored_sites(trace)] != self.sites:
            return False
        for name in self.sites:
            site, cached = trace.nodes[name], self.template.nodes[name]
            if len(site["fn"].batch_shape) != len(cached["fn"].batch_shape):
                return False
            fn = self._expanded(name, site["fn"].batch_shape[self.dim])
            log_q = masked(fn.log_prob(site["value"], *cached["args"], **cached["kwargs"]), cached["mask"])
            if not torch.equal(log_q, site_log_prob(site)):
                return False
        return True

    def draw(self, num_samples: int) -> Any:
        """A guide trace of ``num_samples`` fresh particles drawn from the cached distributions (for replay)."""
        trace = poutine.Trace()
        for name in self.sites:
            cached = self.template.nodes[name]
            fn = self._expanded(name, num_samples)
            trace.add_node(name, type="sample", name=name, fn=fn, value=fn(*cached["args"], **cached["kwargs"]),
                           is_observed=False, args=cached["args"], kwargs=cached["kwargs"], infer=cached["infer"],
                           scale=cached["scale"], mask=cached["mask"], cond_indep_stack=cached["cond_indep_stack"],
                           done=True)
        return trace
