"""Arithmetic counts and the device's peak rate, for "what fraction of the hardware did we use".

FLOPs count a multiply-add as 2 (the convention of peak-rate figures):

- ``nn.Linear(i, o)`` on a batch of b rows: 2 b i o (+ b o for the bias)
- ``nn.Conv2d`` with output (b, C_out, H', W'): 2 b C_out H' W' (C_in / groups) k_h k_w (+ b C_out H' W' for the bias)

Element-wise work (activations, softplus, sampling) is left out of the network count; callers add
the terms they know (e.g. the Bernoulli log-probability, a few FLOPs per pixel) and say so.
The peak is measured, not taken from a data sheet: the median rate of an n x n matmul
(2 n^3 FLOPs), the best case for the device's BLAS / cuBLAS at that dtype.
"""
from __future__ import annotations

import statistics
import time

import torch


def network_flops(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``module`` on ``inputs`` (Linear and Conv2d layers, found by hooks)."""
    total = 0

    def linear(layer: torch.nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        rows = out.numel() // layer.out_features
        total += 2 * rows * layer.in_features * layer.out_features + (out.numel() if layer.bias is not None else 0)

    def conv(layer: torch.nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = layer.kernel_size
        total += 2 * out.numel() * (layer.in_channels // layer.groups) * kh * kw \
            + (out.numel() if layer.bias is not None else 0)

    handles = []
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            handles.append(m.register_forward_hook(linear))
        elif isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_hook(conv))
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


def peak_gflops(device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 5) -> float:
    """Median GFLOP/s of ``a @ b`` for n x n matrices of ``dtype`` on ``device`` (2 n^3 FLOPs each)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    rates = []
    for i in range(repeats + 1):  # the first call warms up (allocation, BLAS threads, cuBLAS handles)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            rates.append(2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)
