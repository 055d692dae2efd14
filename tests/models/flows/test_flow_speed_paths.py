"""Issue #18's faster flow paths against the formulas they replaced, on the same weights and noise.

- ``MaskedLinear`` keeps its masked weights at zero and masks the gradient (no W * M in the forward pass),
  and multiplies staircase masks (natural and reversed MADE orders) block by block, skipping the blocks
  that are all masked: outputs, gradients and whole Adam trajectories equal those of the former
  ``F.linear(x, W * M, b)`` to the rounding of the changed summation order (float64: 1e-12; bit for bit
  where no blocks are used), also after in-place edits of W, loading a state dict with values under the
  mask, copies and ``.double()``.
- halves-mask couplings slice and concatenate instead of gathering: values, log-dets and gradients equal
  the gathers' (``index_select`` / ``cat`` + ``index_select``).
- the soft bound's per-element c by ``lerp``: the former ``where``'s values and gradients
  (``test_log_scale_bound.py`` compares both with the two-branch formula).
- the conditioners' ReLU in place: the same values and gradients as the out-of-place one.
"""
from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import core.cpu_linear as cpu_linear
from core.cpu_linear import onednn_works
from data.specs import DATASETS
from inference.training.config import TrainConfig
from inference.training.optimizers import make_adam
from models.flows.autoregressive import affine_autoregressive
from models.flows.coupling import AffineCoupling, ConditionalAffineCoupling, affine_coupling
from models.flows.density import FlowConfig, FlowDensity
from models.flows.log_scale import bound_log_scale
from models.flows.made import MADE, MaskedLinear, made_masks, staircase_blocks
from models.flows.registry import randomize_


# ---- the former formulas -----------------------------------------------------------------------------
def old_made(made: MADE, weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor,
             activation=torch.relu) -> tuple[torch.Tensor, ...]:
    """The former MADE forward: every layer F.linear(h, W * M, b), out-of-place activation."""
    h = x
    for i, (layer, w, b) in enumerate(zip(made.layers, weights, biases)):
        h = F.linear(h, w * layer.mask, b)
        if i < len(made.layers) - 1:
            h = activation(h)
    return tuple(h.split(made.features, dim=-1))


def old_bound(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    c = torch.where(raw >= 0, raw.new_tensor(high), raw.new_tensor(-low))
    return c * torch.tanh(raw / c)


def old_conditioner(net: nn.Sequential, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = v
    for module in net:
        h = torch.relu(h) if isinstance(module, nn.ReLU) else F.linear(h, module.weight, module.bias)
    return tuple(h.chunk(2, dim=-1))


def old_coupling(t: AffineCoupling, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The former gather / scatter coupling: (output, log |det| of _call)."""
    v_c, v_t = v.index_select(-1, t.cond_index), v.index_select(-1, t.trans_index)
    shift, raw = old_conditioner(t.conditioner.net, v_c)
    s = old_bound(raw, t.log_scale_min, t.log_scale_max)
    out_t = (v_t - shift) * (-s).exp() if inverse else v_t * s.exp() + shift
    return torch.cat([v_c, out_t], dim=-1).index_select(-1, t.merge_index), s.sum(-1)


# ---- MaskedLinear / MADE -------------------------------------------------------------------------------
def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal to the rounding of a different summation order."""
    tol = 1e-12 if a.dtype == torch.float64 else 1e-5
    return a.shape == b.shape and torch.allclose(a, b, rtol=tol, atol=tol)


def test_staircase_blocks_cover_every_kept_weight():
    natural, reversed_, shuffled = torch.arange(9), torch.arange(8, -1, -1), torch.tensor([3, 0, 8, 1, 5, 2, 7, 4, 6])
    for order in (natural, reversed_, shuffled):
        masks = made_masks(order, (13, 11), 2)
        for i, mask in enumerate(masks):
            plan = staircase_blocks(mask)
            if order is shuffled and i == 0:
                assert plan is None  # the inputs in a shuffled order: no staircase, the full product
                continue
            assert plan is not None
            covered = torch.zeros_like(mask, dtype=torch.bool)
            for r0, r1, c0, c1 in plan:
                covered[r0:r1, c0:c1] = True
            assert bool(covered[mask != 0].all())
            assert torch.equal(torch.tensor([r for r0, r1, *_ in plan for r in range(r0, r1)]),
                               torch.arange(mask.shape[0]))
    assert staircase_blocks(torch.ones(4, 4)) is None  # nothing to skip


def perturbed_made(order: torch.Tensor, dtype=torch.float64, hidden=(13, 11)) -> MADE:
    torch.manual_seed(0)
    made = MADE(order.shape[0], hidden, 2, order, zero_init=False).to(dtype)
    randomize_(made, torch.Generator().manual_seed(1), 0.5)  # in place: values under the masks too
    return made


def snapshot(made: MADE) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [l.weight.detach().clone() for l in made.layers], [l.bias.detach().clone() for l in made.layers]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("order", [torch.arange(9), torch.arange(8, -1, -1), torch.randperm(9, generator=torch.Generator().manual_seed(3))])
def test_made_values_and_gradients_equal_the_weight_times_mask_formula(dtype, order):
    made = perturbed_made(order, dtype)
    weights, biases = snapshot(made)
    assert any(bool((w * (1 - l.mask)).any()) for w, l in zip(weights, made.layers))  # edited under the mask
    x = torch.randn(7, 9, dtype=dtype, generator=torch.Generator().manual_seed(2))
    upstream = torch.randn(7, 18, dtype=dtype, generator=torch.Generator().manual_seed(4))

    ref_w = [w.clone().requires_grad_() for w in weights]
    ref_b = [b.clone().requires_grad_() for b in biases]
    x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()
    old = torch.cat(old_made(made, ref_w, ref_b, x_ref), -1)
    old.backward(upstream)
    new = torch.cat(made(x_new), -1)
    new.backward(upstream)
    assert close(new, old)
    assert close(x_new.grad, x_ref.grad)
    for layer, w, b in zip(made.layers, ref_w, ref_b):
        assert close(layer.weight.grad, w.grad) and close(layer.bias.grad, b.grad)
        assert not bool((layer.weight.grad * (1 - layer.mask)).any())  # the gradient is masked
        assert not bool((layer.weight * (1 - layer.mask)).any())  # zeroed under the mask before use
    with torch.no_grad():
        assert close(torch.cat(made(x), -1), old.detach())


def test_made_without_blocks_is_bit_identical():
    """With the block products off, the layer is the former one bit for bit (values and gradients)."""
    made = perturbed_made(torch.arange(9), torch.float32)
    for layer in made.layers:
        layer._blocks, layer._blocks_key = None, (layer.mask.data_ptr(), layer.mask._version, layer.mask.device)
    weights, biases = snapshot(made)
    x = torch.randn(7, 9, generator=torch.Generator().manual_seed(2))
    ref_w = [w.clone().requires_grad_() for w in weights]
    old = torch.cat(old_made(made, ref_w, biases, x), -1)
    new = torch.cat(made(x), -1)
    assert torch.equal(new, old)
    old.square().sum().backward()
    new.square().sum().backward()
    for layer, w in zip(made.layers, ref_w):
        assert torch.equal(layer.weight.grad, w.grad)


def test_made_adam_trajectory_equals_the_former_layer():
    """Ten fused-Adam steps: the same losses and the same unmasked weights as W * M training."""
    order = torch.arange(6, -1, -1)
    made = perturbed_made(order, torch.float64, (12,))
    weights, biases = snapshot(made)
    ref = [nn.Parameter(t.clone()) for t in weights + biases]
    config = TrainConfig(batch_size=8, lr=1e-2)
    opt_new, opt_ref = make_adam(made.parameters(), config), make_adam(ref, config)
    gen = torch.Generator().manual_seed(5)
    for _ in range(10):
        x = torch.randn(8, 7, generator=gen, dtype=torch.float64)
        losses = []
        for opt, forward in ((opt_new, lambda: made(x)),
                             (opt_ref, lambda: old_made(made, ref[:2], ref[2:], x))):
            shift, raw = forward()
            loss = (shift ** 2 + raw.tanh()).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        assert close(losses[0], losses[1])
    for layer, w in zip(made.layers, ref[:2]):
        assert close(layer.weight, w.detach() * layer.mask)
    for layer, b in zip(made.layers, ref[2:]):
        assert close(layer.bias, b.detach())


def test_made_edits_loads_copies_and_conversions_keep_the_function():
    made = perturbed_made(torch.arange(9))
    x = torch.randn(5, 9, dtype=torch.float64)

    def reference(m: MADE) -> torch.Tensor:
        return torch.cat(old_made(m, *snapshot(m), x), -1)

    def ours(m: MADE) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(m(x), -1)

    assert close(ours(made), reference(made))
    # an old checkpoint: values under the mask; the same keys
    old_state = {k: v.clone() for k, v in made.state_dict().items()}
    for name, value in old_state.items():
        if name.endswith("weight"):
            value.add_(torch.randn(value.shape, dtype=value.dtype))
    expected = reference_from_state(made, old_state, x)
    fresh = MADE(9, (13, 11), 2, torch.arange(9), zero_init=False).double()
    assert set(fresh.state_dict()) == set(old_state)
    fresh.load_state_dict(old_state)
    assert close(ours(fresh), expected)
    # an in-place edit after a use
    with torch.no_grad():
        fresh.layers[0].weight.add_(1.0)
    assert close(ours(fresh), reference(fresh))
    # copies (deepcopy, pickling) and dtype conversions
    buffer = io.BytesIO()
    torch.save(fresh, buffer)
    buffer.seek(0)
    for other in (copy.deepcopy(fresh), torch.load(buffer, weights_only=False)):
        assert torch.equal(ours(other), ours(fresh))
    single = copy.deepcopy(fresh).float()
    with torch.no_grad():
        single.layers[1].weight.add_(0.5)
        assert close(torch.cat(single(x.float()), -1),
                     torch.cat(old_made(single, *snapshot(single), x.float()), -1))


def reference_from_state(made: MADE, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    n = len(made.layers)
    weights = [state[f"layers.{i}.weight"] for i in range(n)]
    biases = [state[f"layers.{i}.bias"] for i in range(n)]
    return torch.cat(old_made(made, weights, biases, x), -1)


def test_masked_linear_keys_and_a_manual_gradient_step():
    """A step on gradients that did not come through the layer's backward (set by hand) is not trusted:
    the next forward zeroes the masked entries again."""
    layer = MaskedLinear(4, 3, torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]))
    assert set(layer.state_dict()) == {"weight", "bias", "mask"}
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    layer.weight.grad = torch.ones_like(layer.weight)
    opt.step()
    x = torch.randn(2, 4)
    assert close(layer(x), F.linear(x, layer.weight.detach() * layer.mask, layer.bias))
    assert not bool((layer.weight * (1 - layer.mask)).any())


def test_maf_layer_density_unchanged():
    """The whole MAF layer (T and its D-pass inverse) against the former MADE on the same weights."""
    torch.manual_seed(0)
    t = affine_autoregressive(6, (10,), "maf", torch.randperm(6)).double()
    randomize_(t, torch.Generator().manual_seed(2), 0.4)
    weights, biases = snapshot(t.made)
    y = torch.randn(4, 6, dtype=torch.float64)
    shift, raw = old_made(t.made, weights, biases, y)
    s = old_bound(raw, t.log_scale_min, t.log_scale_max)
    assert close(t._inverse(y), y * s.exp() + shift)
    assert close(t.log_abs_det_jacobian(t._inverse(y), y), -s.sum(-1))
    x = t._call(y)  # the D-pass inverse
    assert close(t._inverse(x), y)


# ---- couplings -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim, parity", [(8, 0), (8, 1), (7, 0), (7, 1)])
def test_halves_coupling_equals_the_gathers(dtype, dim, parity):
    torch.manual_seed(0)
    t = affine_coupling((dim,), "halves", parity, (16, 16)).to(dtype)
    randomize_(t, torch.Generator().manual_seed(1), 0.5)
    assert t._halves is not None
    v = 2 * torch.randn(5, dim, dtype=dtype, generator=torch.Generator().manual_seed(2))
    upstream = torch.randn(5, dim, dtype=dtype, generator=torch.Generator().manual_seed(3))
    for inverse in (False, True):
        results = []
        for fn in (lambda u: (t._inverse(u) if inverse else t._call(u), t._ladj_cache[2]),
                   lambda u: old_coupling(t, u, inverse)):
            u = v.clone().requires_grad_()
            t.zero_grad(set_to_none=True)
            out, ladj = fn(u)
            (out * upstream).sum().add(ladj.sum()).backward()
            results.append((out.detach(), ladj.detach(), u.grad, [p.grad.clone() for p in t.parameters()]))
        # equal to rounding, not bit for bit: slices and gathers hand BLAS differently laid-out operands,
        # and some (MKL on AMD EPYC, odd widths) sum them in another order; the fused affine update's gradient
        # (models.flows.affine_update) rounds differently too. Gradients are sums over the batch, so an element
        # can be much smaller than its rounding: compared relative to the tensor's largest element
        rel = 1e-5 if dtype == torch.float32 else 1e-12
        (out, ladj, grad, pgrads), (out_ref, ladj_ref, grad_ref, pgrads_ref) = results
        for a, b in [(out, out_ref), (ladj, ladj_ref), (grad, grad_ref), *zip(pgrads, pgrads_ref)]:
            torch.testing.assert_close(a, b, rtol=rel, atol=rel * float(b.abs().max()))


def test_checkerboard_and_conditional_couplings_keep_the_gathers():
    assert affine_coupling((2, 4, 4), "checkerboard", 0, (8,))._halves is None
    t = affine_coupling((6,), "halves", 1, (8,), context_features=3)
    assert isinstance(t, ConditionalAffineCoupling)
    randomize_(t, torch.Generator().manual_seed(1), 0.5)
    bound = t.condition(torch.randn(5, 3))
    v = torch.randn(5, 6)
    y = bound._call(v)
    assert bound._halves is not None
    assert torch.allclose(bound._inverse(y), v, atol=1e-6)


def test_bound_equals_the_former_where_and_tanh_to_rounding():
    """The soft bound's c in place or by lerp and its sigmoid form against the former where + tanh: the same
    non-finite values, finite values and gradients within the dtype's rounding (``tests/.../test_log_scale_bound``)."""
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        raw = 4 * torch.randn(5000, dtype=dtype, generator=gen)
        raw[:5] = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf")], dtype=dtype)
        eps = torch.finfo(dtype).eps
        for low, high in ((-5.0, 3.0), (-2.7, 1.3)):
            r1, r2 = raw.clone().requires_grad_(), raw.clone().requires_grad_()
            new, old = bound_log_scale(r1, low, high, "soft"), old_bound(r2, low, high)
            assert torch.equal(new[:5].nan_to_num(7.0), old[:5].nan_to_num(7.0))
            assert float((new - old)[5:].abs().max()) <= 4 * eps * -low
            new[5:].sum().backward()
            old[5:].sum().backward()
            assert torch.equal(r1.grad[:5].nan_to_num(7.0), r2.grad[:5].nan_to_num(7.0))
            assert float((r1.grad - r2.grad)[5:].abs().max()) <= 8 * eps


def test_made_blocks_under_autocast():
    """bfloat16 autocast (``--precision bf16``): the block products run, and the gradients come back in
    the parameters' and the input's dtypes, close to float32 ones."""
    made = perturbed_made(torch.arange(9), torch.float32)
    x = torch.randn(6, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch.cat(made(x), -1)
    out.float().square().sum().backward()
    assert out.dtype == torch.bfloat16 and x.grad.dtype == torch.float32
    grads = [layer.weight.grad.clone() for layer in made.layers]
    made.zero_grad()
    torch.cat(made(x.detach()), -1).square().sum().backward()
    for g, layer in zip(grads, made.layers):
        assert g.dtype == torch.float32 and not bool((g * (1 - layer.mask)).any())
        assert torch.allclose(g, layer.weight.grad, rtol=0.1, atol=0.1 * float(layer.weight.grad.abs().max()))


@pytest.mark.skipif(not onednn_works(), reason="this torch build has no working oneDNN linear op")
@pytest.mark.parametrize("arch", ["realnvp_mlp", "maf"])
def test_flow_log_density_and_gradients_on_onednn_are_float32_accurate(monkeypatch, arch):
    """The whole flow (conditioner MLPs, MADE blocks) with every float32 product on oneDNN: log-density and
    parameter gradients within float32 rounding of the float64 computation, as torch's own products are."""
    monkeypatch.setattr(cpu_linear, "MIN_MULTIPLY_ADDS", 0)
    torch.manual_seed(0)
    flow = FlowDensity(FlowConfig(arch=arch, num_layers=3, hidden=(64, 64), mask="halves"), DATASETS["digits"])
    randomize_(flow, torch.Generator().manual_seed(1), 0.1)
    y = 16.0 * torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))

    def evaluated(model: FlowDensity, images: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        log_p = model.log_density(images)
        log_p.sum().backward()
        return [log_p.detach().double()] + [p.grad.double() for p in model.parameters()]

    exact = evaluated(copy.deepcopy(flow).double(), y.double())   # float64: F.linear whatever the backend
    errors = {}
    for backend in ("torch", "onednn"):
        monkeypatch.setattr(cpu_linear, "_choice", backend)
        got = evaluated(flow, y)
        errors[backend] = max(float((g - e).norm() / e.norm()) for g, e in zip(got, exact))
    assert errors["onednn"] < 1e-5 and errors["torch"] < 1e-5, errors
