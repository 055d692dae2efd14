"""The fused affine update (``models.flows.affine_update``) against the composed torch formula it replaces.

Values bit for bit; gradients equal in float64 to 1e-12 and in float32 to the float64 gradient within
rounding; first and second derivatives by finite differences (gradcheck, gradgradcheck); the clamp bound and
broadcasting operands take the composed formula.
"""
from __future__ import annotations

import pytest
import torch

from models.flows.affine_update import SoftAffineUpdate, affine_update, composed_affine_update
from models.flows.autoregressive import affine_autoregressive
from models.flows.coupling import affine_coupling
from models.flows.registry import randomize_

LOW, HIGH = -5.0, 3.0


def operands(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    """value, shift, raw (raw spread over both branches of the bound and into saturation)."""
    gen = torch.Generator().manual_seed(seed)
    value, shift, raw = (torch.randn(shape, dtype=dtype, generator=gen) for _ in range(3))
    return [2 * value, shift, 4 * raw]


def run(fn, tensors: list[torch.Tensor], inverse: bool, needs: tuple[bool, bool, bool] = (True, True, True)):
    """(out, ladj, gradients of sum(out * u) + sum(ladj * w) for the inputs that need them)."""
    leaves = [t.clone().requires_grad_(need) for t, need in zip(tensors, needs)]
    out, ladj = fn(*leaves, LOW, HIGH, inverse)
    gen = torch.Generator().manual_seed(9)
    u = torch.randn(out.shape, dtype=out.dtype, generator=gen)
    w = torch.randn(ladj.shape, dtype=out.dtype, generator=gen)
    grads = torch.autograd.grad((out * u).sum() + (ladj * w).sum(), [t for t in leaves if t.requires_grad])
    return out.detach(), ladj.detach(), grads


def fused(value, shift, raw, low, high, inverse):
    return SoftAffineUpdate.apply(value, shift, raw, low, high, inverse)


def composed(value, shift, raw, low, high, inverse):
    return composed_affine_update(value, shift, raw, low, high, "soft", inverse)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("shape", [(64, 40), (3, 5, 7), (9,)])
def test_values_are_bit_identical_and_gradients_equal_the_composed_ones(inverse, shape):
    for dtype in (torch.float32, torch.float64):
        tensors = operands(shape, dtype)
        out, ladj, grads = run(fused, tensors, inverse)
        out_ref, ladj_ref, grads_ref = run(composed, tensors, inverse)
        assert torch.equal(out, out_ref) and torch.equal(ladj, ladj_ref)
        assert out.shape == shape and ladj.shape == shape[:-1]
        for g, r in zip(grads, grads_ref):
            rel = 1e-12 if dtype == torch.float64 else 1e-6
            torch.testing.assert_close(g, r, rtol=rel, atol=rel * float(r.abs().max()))


@pytest.mark.parametrize("inverse", [False, True])
def test_float32_gradients_are_as_accurate_as_the_composed_ones(inverse):
    tensors = operands((256, 50), torch.float32, seed=1)
    *_, grads = run(fused, tensors, inverse)
    *_, grads_composed = run(composed, tensors, inverse)
    *_, grads64 = run(composed, [t.double() for t in tensors], inverse)
    for g, c, r in zip(grads, grads_composed, grads64):
        scale = float(r.abs().max())
        assert float((g.double() - r).abs().max()) <= max(2 * float((c.double() - r).abs().max()), 1e-6 * scale)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("needs", [(True, True, True), (False, False, True), (True, False, False), (False, True, True)])
def test_first_and_second_derivatives_by_finite_differences(inverse, needs):
    tensors = [t.requires_grad_(need) for t, need in zip(operands((4, 6), torch.float64, seed=2), needs)]

    def f(*args):
        return SoftAffineUpdate.apply(*args, LOW, HIGH, inverse)

    assert torch.autograd.gradcheck(f, tensors)
    assert torch.autograd.gradgradcheck(f, tensors)


def test_clamp_bound_and_broadcasting_operands_take_the_composed_formula():
    value, shift, raw = operands((5, 8), torch.float64, seed=3)
    for bound in ("clamp", "soft"):
        wide_shift, wide_raw = (shift.expand(2, 5, 8), raw.expand(2, 5, 8)) if bound == "soft" else (shift, raw)
        for inverse in (False, True):
            got = affine_update(value, wide_shift, wide_raw, LOW, HIGH, bound, inverse)
            want = composed_affine_update(value, wide_shift, wide_raw, LOW, HIGH, bound, inverse)
            assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert affine_update(value, shift, raw, LOW, HIGH, "soft", True)[0].grad_fn is None  # no graph without grads


def test_the_coupling_and_autoregressive_layers_use_it():
    """A RealNVP coupling and a MAF layer record the fused node (the speed path is the one in use)."""
    x = torch.randn(3, 6, requires_grad=True)
    for t in (affine_coupling((6,), "halves", 0, (8,)), affine_autoregressive(6, (12,), "maf")):
        randomize_(t, torch.Generator().manual_seed(0), 0.5)
        names = set()
        for out in (t._call(x), t._inverse(x)):
            stack = [out.grad_fn]
            while stack:
                node = stack.pop()
                if node is not None:
                    names.add(type(node).__name__)
                    stack.extend(n for n, _ in node.next_functions)
        assert "SoftAffineUpdateBackward" in names
