"""Amortised flow layers against the non-amortised ones of flows I (oracles with the same parameters), the
orthonormality of Sylvester's Q, per-example parameters, and one-line errors. The generic harness
(test_flow_transforms.py) runs over the registered amortised layers as well."""
from __future__ import annotations

import pytest
import torch

from core.errors import DGMError
from models.flows.amortized_householder import AmortizedHouseholder
from models.flows.amortized_planar import AmortizedPlanar
from models.flows.amortized_sylvester import AmortizedSylvester
from models.flows.householder import Householder
from models.flows.planar import Planar
from models.flows.sylvester import Sylvester

D = 5


def _with_params(module, params: torch.Tensor):
    """The amortised layer with exactly ``params``: zero head weights, the parameters as the head's bias."""
    with torch.no_grad():
        module.head.weight.zero_()
        module.head.bias.copy_(params)
    return module.condition(torch.zeros(module.context_features, dtype=torch.float64))


def _points(seed: int = 0) -> torch.Tensor:
    return torch.randn(7, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_planar_with_given_parameters_is_the_planar_flow() -> None:
    oracle = Planar(D).double()
    torch.nn.init.normal_(oracle.u)
    torch.nn.init.normal_(oracle.w)
    torch.nn.init.normal_(oracle.bias)
    params = torch.cat([oracle.u, oracle.w, oracle.bias]).detach()
    t = _with_params(AmortizedPlanar(D, 3).double(), params)
    x = _points()
    torch.testing.assert_close(t._call(x), oracle._call(x))
    torch.testing.assert_close(t.log_abs_det_jacobian(x, t._call(x)), oracle.log_abs_det_jacobian(x, oracle._call(x)))


def test_householder_with_given_vectors_is_the_householder_flow() -> None:
    oracle = Householder(D, 3).double()
    torch.nn.init.normal_(oracle.vectors)
    t = _with_params(AmortizedHouseholder(D, 3, 3).double(), oracle.vectors.detach().reshape(-1))
    x = _points()
    torch.testing.assert_close(t._call(x), oracle._call(x))
    torch.testing.assert_close(t._inverse(t._call(x)), x)


def _sylvester_params(oracle: Sylvester) -> torch.Tensor:
    """Our layout (R and R~ row by row over the upper triangle, raw diagonal; b; Q's parameters) of an oracle."""
    rows, cols = torch.triu_indices(D, D)

    def triangle(upper: torch.Tensor, diag: torch.Tensor) -> torch.Tensor:
        return (upper.triu(1) + torch.diag(diag))[rows, cols]

    q_params = oracle.vectors.reshape(-1) if oracle.variant == "householder" else torch.zeros(0, dtype=torch.float64)
    return torch.cat([triangle(oracle.r_upper, oracle.r_diag), triangle(oracle.s_upper, oracle.s_diag), oracle.b,
                      q_params]).detach()


@pytest.mark.parametrize("variant, options", [("householder", {"num_reflections": 2}),
                                              ("triangular", {"reverse": True}), ("triangular", {})])
def test_sylvester_with_given_parameters_is_the_sylvester_flow(variant: str, options: dict) -> None:
    oracle = Sylvester(D, variant, **options).double()
    for p in oracle.parameters():
        torch.nn.init.normal_(p, std=0.7)
    t = _with_params(AmortizedSylvester(D, 3, variant, **options).double(), _sylvester_params(oracle))
    x = _points()
    torch.testing.assert_close(t._call(x), oracle._call(x))
    torch.testing.assert_close(t.log_abs_det_jacobian(x, t._call(x)), oracle.log_abs_det_jacobian(x, oracle._call(x)))


def test_orthogonal_sylvester_q_has_orthonormal_columns_per_example() -> None:
    module = AmortizedSylvester(D, 3, "orthogonal", num_columns=3).double()
    torch.nn.init.normal_(module.head.weight)
    context = torch.randn(4, 3, dtype=torch.float64)
    q = module.condition(context).layer_params()[3].q
    assert q.shape == (4, D, 3)
    torch.testing.assert_close(q.transpose(-1, -2) @ q, torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    assert not torch.allclose(q[0], q[1])  # each example its own Q


def test_each_example_gets_its_own_parameters() -> None:
    """A batch of contexts gives the layer of each context, broadcast over importance samples (K, N, D)."""
    module = AmortizedPlanar(D, 3).double()
    torch.nn.init.normal_(module.head.weight)
    context = torch.randn(4, 3, dtype=torch.float64)
    z = torch.randn(6, 4, D, dtype=torch.float64)                  # K = 6 samples of N = 4 examples
    batched = module.condition(context)._call(z)
    for n in range(4):
        torch.testing.assert_close(batched[:, n], module.condition(context[n])._call(z[:, n]))


@pytest.mark.parametrize("build, message", [
    (lambda: AmortizedPlanar(D, 0), "context of at least one feature"),
    (lambda: AmortizedHouseholder(D, 3, 0), "at least one reflection"),
    (lambda: AmortizedSylvester(D, 3, "cayley"), "unknown Sylvester variant"),
    (lambda: AmortizedSylvester(D, 3, "triangular", num_columns=2), "only the orthogonal"),
    (lambda: AmortizedSylvester(D, 3, "orthogonal", num_columns=D + 1), "1 <= num_columns"),
    (lambda: AmortizedPlanar(D, 3).condition(torch.zeros(2, 4)), "expects contexts of 3 features"),
])
def test_bad_arguments_give_one_line_errors(build, message: str) -> None:
    with pytest.raises(DGMError, match=message) as info:
        build()
    assert "\n" not in str(info.value)
