"""Linear layers y = x W^T + b whose CPU float32 products run on oneDNN where torch's MKL GEMM is slow.

torch's CPU ``addmm`` / ``mm`` call MKL's sgemm. On non-Intel x86 CPUs MKL does not pick its fastest
kernels: on the AMD EPYC of this project's machines (one thread) it reaches 65-85 GFLOP/s on the
products of a 1024-wide MLP, where oneDNN (bundled with every x86 torch build, the library behind
torch's ``mkldnn`` ops) reaches 80-100, and the backward pass's products (transposed operands) are
0-18% faster on oneDNN too (issue #18).

:func:`linear` is ``F.linear`` with that choice made per call: float32 tensors on the CPU go through
:class:`OneDNNLinear` (the forward and both backward products on oneDNN, operands passed as views where
oneDNN reads them at full speed, so transposes cost no copy), everything else (float64, GPUs, empty
batches, CPU autocast, products of fewer than ``MIN_MULTIPLY_ADDS`` multiply-adds) through ``F.linear``.
The two backends compute the same sums in another order: values agree to float32 rounding (relative
~1e-7), not bit for bit. The backward is built from differentiable products, so double backward
(gradient penalties, Hessian-vector products) works.

Which backend (``DGM_CPU_LINEAR``, read once; :func:`set_backend` in code):

    auto     oneDNN on x86 CPUs whose vendor is not GenuineIntel (AMD, Hygon), torch's own elsewhere
             (on Intel CPUs MKL is Intel's own fast path; ARM builds use their own BLAS)
    onednn   oneDNN wherever torch has it
    torch    always ``F.linear``

oneDNN allocates and frees working buffers on every call; before its first product glibc is told to keep freed
memory in the process (``core.heap``: without it, those buffers page-fault on every call).

oneDNN is reached through ``torch.ops.mkldnn._linear_pointwise`` (the op torch's own compiler emits for
CPU linear layers). Before its first use it is checked once against ``F.linear`` on a small problem; if
the op is missing or disagrees, :func:`linear` keeps ``F.linear``, so a torch build without it runs as
before.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import DGMError
from core.heap import keep_freed_memory

BACKENDS: tuple[str, ...] = ("auto", "onednn", "torch")
_choice: str | None = None


def set_backend(name: str) -> None:
    """Choose the CPU float32 backend of :func:`linear`: ``auto``, ``onednn`` or ``torch`` (module docstring)."""
    global _choice
    if name not in BACKENDS:
        raise DGMError(f"unknown CPU linear backend {name!r}; choose one of {', '.join(BACKENDS)} "
                       "(DGM_CPU_LINEAR)")
    _choice = name


def backend() -> str:
    """The backend in force: ``set_backend``'s choice, else ``DGM_CPU_LINEAR``, else ``auto``."""
    if _choice is None:
        set_backend(os.environ.get("DGM_CPU_LINEAR", "auto"))
    assert _choice is not None
    return _choice


@lru_cache(maxsize=1)
def cpu_vendor() -> str:
    """The x86 vendor string (``GenuineIntel``, ``AuthenticAMD``, ...) from /proc/cpuinfo; '' where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _onednn_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (B, in) @ weight^T (in, out) + bias on oneDNN; any operand may be a transposed or sliced view."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@lru_cache(maxsize=1)
def onednn_works() -> bool:
    """Whether this torch build has the oneDNN linear op and it computes F.linear (checked once, on strided and
    contiguous operands, to float32 rounding)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=gen) for s in ((33, 40), (24, 17), (17,)))
    # a column slice (row stride 40, 24 features) times a transposed weight (17, 24), with bias, and a transposed
    # input (40, 17) of unit row stride times a contiguous weight (24, 17): the layouts the backward pass uses
    cases = [(x[:, 3:27], w.t(), b), (x.t()[:, :17], w, None)]
    try:
        got = [_onednn_product(*case) for case in cases]
    except Exception:
        return False
    want = [F.linear(*case) for case in cases]
    return all(g.shape == r.shape and torch.allclose(g, r, rtol=1e-5, atol=1e-5) for g, r in zip(got, want))


def uses_onednn(x: torch.Tensor) -> bool:
    """Whether :func:`linear` sends the product of ``x`` to oneDNN under the backend in force."""
    # under CPU autocast F.linear runs in bfloat16: leave it that choice
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() == 0 or torch.is_autocast_enabled("cpu"):
        return False
    choice = backend()
    if choice == "torch" or (choice == "auto" and not (platform.machine() in ("x86_64", "AMD64")
                                                       and cpu_vendor() not in ("", "GenuineIntel"))):
        return False
    if not onednn_works():
        return False
    keep_freed_memory()  # oneDNN frees its buffers after every call: keep them in the process (core.heap; once)
    return True


def _input_layout(x: torch.Tensor) -> torch.Tensor:
    """x itself when oneDNN reads it at full speed as the left operand (rows or columns of unit stride, e.g. a
    column slice or a transpose), else a contiguous copy (broadcast or otherwise strided views)."""
    s0, s1 = x.stride()
    if (s1 == 1 and s0 >= x.shape[1]) or (s0 == 1 and s1 >= x.shape[0]):
        return x
    return x.contiguous()


def _weight_layout(w: torch.Tensor) -> torch.Tensor:
    """w itself when it is contiguous or the transpose of a contiguous matrix, else a contiguous copy: oneDNN
    takes any other strided right operand to a reference kernel (a transposed column slice, 128 x 392 x 1024:
    1.4 s instead of 1 ms)."""
    if w.is_contiguous() or w.t().is_contiguous():
        return w
    return w.contiguous()


#: the smallest product (multiply-adds B * in * out) sent to oneDNN: each call also pays a fixed ~30 us (its
#: primitive) and ~50 us of Python in the autograd function, so smaller products are faster in torch's own.
#: Measured on the AMD EPYC (one thread, forward + backward of one layer at batch 128, oneDNN / torch): 500 x 500
#: (32M) 0.98-1.00, 784 x 500 (48M) 0.97-0.98, 392 x 1024 (49M, a RealNVP coupling's first layer) 0.95-1.00,
#: 1024 x 1024 0.93 (1.02 when glibc hands oneDNN's per-call buffers back to the kernel: see core.heap); in whole
#: steps the VAE is level and a RealNVP step 1% faster at 2^25 than at 2^26. 2^25 keeps the 500 x 500 layers on
#: torch and sends the rest to oneDNN (issue #18, fourth session)
MIN_MULTIPLY_ADDS = 1 << 25


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (B, in) @ weight^T + bias for 2-D operands: ``F.linear`` below ``MIN_MULTIPLY_ADDS``; else on oneDNN,
    through :class:`OneDNNLinear` when a graph is being recorded for any operand."""
    if x.shape[0] * x.shape[1] * weight.shape[0] < MIN_MULTIPLY_ADDS:
        return F.linear(x, weight, bias)
    x, weight = _input_layout(x), _weight_layout(weight)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or
                                    (bias is not None and bias.requires_grad)):
        return OneDNNLinear.apply(x, weight, bias)
    return _onednn_product(x, weight, bias)


class OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b (x (B, in), W (out, in), b (out,)) on oneDNN, with

        dL/dx = g W,   dL/dW = g^T x,   dL/db = sum_B g          (g = dL/dy, (B, out))

    both products on oneDNN again, through :func:`_product` (W^T and g^T as transposed views, x^T copied
    when x is a column slice), so that a graph is recorded when the backward itself is differentiated."""

    # forward(ctx, ...), not forward + setup_context: the latter binds the arguments with inspect.signature on
    # every call (~35 us, more than a 128 x 392 x 1024 product saves)
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_product(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = _product(grad, weight.t(), None) if ctx.needs_input_grad[0] else None
        grad_w = _product(grad.t(), x.t(), None) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: x (..., in), weight (out, in), bias (out,) -> (..., out); float32 CPU
    products on oneDNN when the backend says so (module docstring), all else through ``F.linear``."""
    # the size test first: the small layers (most of a VAE's) pay one multiplication, not the backend lookup
    if (weight.dim() != 2 or x.numel() * weight.shape[0] < MIN_MULTIPLY_ADDS or not uses_onednn(x)
            or weight.dtype != x.dtype or weight.device != x.device
            or (bias is not None and (bias.dtype != x.dtype or bias.device != x.device))):
        return F.linear(x, weight, bias)
    if x.dim() == 2:
        return _product(x, weight, bias)
    lead = x.shape[:-1]
    return _product(x.reshape(-1, x.shape[-1]), weight, bias).reshape(*lead, weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (the same parameters, initialisation and state-dict keys) whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
