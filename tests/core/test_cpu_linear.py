"""core.cpu_linear: the oneDNN products compute F.linear's values and gradients (to float32 rounding, measured
against float64), in every operand layout the layers and their backward pass use; the choice of backend
follows its stated rule; and a missing or wrong oneDNN op falls back to F.linear."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import core.cpu_linear as cpu_linear
from core.cpu_linear import Linear, OneDNNLinear, linear, onednn_works, set_backend
from core.errors import DGMError
from models.networks import mlp

needs_onednn = pytest.mark.skipif(not onednn_works(), reason="this torch build has no working oneDNN linear op")


@pytest.fixture
def onednn(monkeypatch):
    """oneDNN for every float32 CPU product, however small (the tests use small sizes)."""
    monkeypatch.setattr(cpu_linear, "_choice", "onednn")
    monkeypatch.setattr(cpu_linear, "MIN_MULTIPLY_ADDS", 0)


def layouts(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Inputs with 24 features: contiguous, a column slice (row stride 40), transposed, and 3-D."""
    base = torch.randn(40, 40, generator=gen)
    return {"contiguous": torch.randn(9, 24, generator=gen), "column slice": base[:9, 5:29],
            "transposed": base[:24, :9].t(), "3-d": torch.randn(2, 3, 24, generator=gen)}


def rounding_error(value: torch.Tensor, exact: torch.Tensor) -> float:
    return float(((value.double() - exact).abs().max() / exact.abs().max()).detach())


@needs_onednn
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "column slice", "transposed", "3-d"])
def test_values_and_gradients_are_f_linear_to_float32_rounding(onednn, layout, with_bias):
    gen = torch.Generator().manual_seed(0)
    x = layouts(gen)[layout].requires_grad_()
    w = torch.randn(17, 24, generator=gen, requires_grad=True)
    b = torch.randn(17, generator=gen, requires_grad=True) if with_bias else None
    upstream = torch.randn(*x.shape[:-1], 17, generator=gen)
    out = linear(x, w, b)
    assert "OneDNNLinear" in type(out.grad_fn).__name__ or "View" in type(out.grad_fn).__name__
    grads = torch.autograd.grad((out * upstream).sum(), [x, w] + ([b] if with_bias else []))
    leaves = [t.detach().double().requires_grad_() for t in [x, w] + ([b] if with_bias else [])]
    exact = F.linear(leaves[0], leaves[1], leaves[2] if with_bias else None)
    exact_grads = torch.autograd.grad((exact * upstream.double()).sum(), leaves)
    assert out.shape == exact.shape and out.dtype == torch.float32
    assert rounding_error(out, exact) < 1e-6
    for g, e in zip(grads, exact_grads):
        assert g.shape == e.shape and rounding_error(g, e) < 1e-6


@needs_onednn
def test_the_product_and_both_gradient_products_run_on_onednn(onednn, monkeypatch):
    calls = []
    product = cpu_linear._onednn_product
    monkeypatch.setattr(cpu_linear, "_onednn_product", lambda *a: calls.append(a[0].shape) or product(*a))
    x = torch.randn(6, 5, requires_grad=True)
    w = torch.randn(4, 5, requires_grad=True)
    linear(x, w).sum().backward()
    assert calls == [(6, 5), (6, 4), (4, 6)]  # y = x W^T, then dL/dx = g W and dL/dW = g^T x


@needs_onednn
def test_double_backward_matches_f_linear(onednn):
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(7, 5, generator=gen), torch.randn(3, 5, generator=gen)
    results = []
    for fn in (linear, F.linear):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        (gx,) = torch.autograd.grad(torch.tanh(fn(xi, wi)).sum(), xi, create_graph=True)
        results.append(torch.autograd.grad(gx.pow(2).sum(), wi)[0])
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


@needs_onednn
def test_what_goes_to_f_linear(monkeypatch):
    monkeypatch.setattr(cpu_linear, "_choice", "onednn")
    w = torch.randn(4, 5, requires_grad=True)
    small = linear(torch.randn(3, 5), w)                       # 60 multiply-adds: below MIN_MULTIPLY_ADDS
    assert "OneDNNLinear" not in type(small.grad_fn).__name__
    monkeypatch.setattr(cpu_linear, "MIN_MULTIPLY_ADDS", 0)
    assert "OneDNNLinear" in type(linear(torch.randn(3, 5), w).grad_fn).__name__
    for x, weight in [(torch.randn(3, 5, dtype=torch.float64), w.double()), (torch.randn(0, 5), w)]:
        assert not cpu_linear.uses_onednn(x)
        torch.testing.assert_close(linear(x, weight), F.linear(x, weight))
    with torch.autocast("cpu", dtype=torch.bfloat16):          # autocast's bfloat16 product, as F.linear's
        assert not cpu_linear.uses_onednn(torch.randn(3, 5))
        assert linear(torch.randn(3, 5), w).dtype == torch.bfloat16
    set_backend("torch")
    assert not cpu_linear.uses_onednn(torch.randn(3, 5))


def test_only_contiguous_or_transposed_weights_reach_onednn_as_views():
    w = torch.randn(6, 8)
    assert cpu_linear._weight_layout(w) is w and cpu_linear._weight_layout(w.t()) is not None
    assert cpu_linear._weight_layout(w.t()).data_ptr() == w.data_ptr()
    sliced = w[:, 2:7].t()                                    # the transposed column slice oneDNN runs slowly
    copy = cpu_linear._weight_layout(sliced)
    assert copy.is_contiguous() and torch.equal(copy, sliced)
    column_slice = w[:, 2:7]                                  # fine as the left operand: rows of unit stride
    assert cpu_linear._input_layout(column_slice) is column_slice
    broadcast = torch.randn(1, 8).expand(6, 8)
    assert cpu_linear._input_layout(broadcast).is_contiguous()


def test_auto_uses_onednn_on_x86_cpus_not_made_by_intel(monkeypatch):
    monkeypatch.setattr(cpu_linear, "_choice", "auto")
    monkeypatch.setattr(cpu_linear, "onednn_works", lambda: True)
    monkeypatch.setattr(cpu_linear.platform, "machine", lambda: "x86_64")
    x = torch.randn(2, 3)
    for vendor, expected in [("AuthenticAMD", True), ("HygonGenuine", True), ("GenuineIntel", False), ("", False)]:
        monkeypatch.setattr(cpu_linear, "cpu_vendor", lambda vendor=vendor: vendor)
        assert cpu_linear.uses_onednn(x) == expected, vendor
    monkeypatch.setattr(cpu_linear.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(cpu_linear, "cpu_vendor", lambda: "AuthenticAMD")
    assert not cpu_linear.uses_onednn(x)


def test_a_wrong_or_missing_onednn_op_falls_back_to_f_linear(monkeypatch):
    onednn_works.cache_clear()
    try:
        monkeypatch.setattr(cpu_linear, "_onednn_product", lambda x, w, b: torch.zeros(x.shape[0], w.shape[0]))
        assert not onednn_works()
        onednn_works.cache_clear()

        def missing(*args):
            raise RuntimeError("no such op")
        monkeypatch.setattr(cpu_linear, "_onednn_product", missing)
        assert not onednn_works()
        monkeypatch.setattr(cpu_linear, "_choice", "onednn")
        x, w = torch.randn(3, 5), torch.randn(4, 5)
        torch.testing.assert_close(linear(x, w), F.linear(x, w))
    finally:
        monkeypatch.undo()
        onednn_works.cache_clear()


def test_backend_names_are_checked(monkeypatch):
    monkeypatch.setattr(cpu_linear, "_choice", None)
    with pytest.raises(DGMError, match="unknown CPU linear backend 'mkl'; choose one of auto, onednn, torch"):
        set_backend("mkl")
    monkeypatch.setenv("DGM_CPU_LINEAR", "bogus")
    with pytest.raises(DGMError, match="DGM_CPU_LINEAR"):
        cpu_linear.backend()


def test_linear_is_an_nn_linear_with_the_same_state_dict_and_the_mlps_use_it():
    torch.manual_seed(0)
    ours = Linear(5, 3)
    torch.manual_seed(0)
    stock = nn.Linear(5, 3)
    assert isinstance(ours, nn.Linear) and ours.state_dict().keys() == stock.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), stock.state_dict().values()))
    x = torch.randn(2, 5)
    torch.testing.assert_close(ours(x), stock(x))
    assert all(isinstance(m, Linear) for m in mlp(4, (8,), 2) if isinstance(m, nn.Linear))
