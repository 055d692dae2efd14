"""Mixed precision in training: ``--precision fp32|bf16|fp16``.

Only the networks run in low precision. :meth:`Precision.networks` enters ``torch.autocast`` inside
the ``forward`` of each network of a model (the modules its Pyro story calls: encoder, decoder,
generator, discriminator, the flows' conditioner networks, the model itself when it is called) and
casts their floating outputs back to float32. Everything between the networks stays float32: the
likelihoods' and priors' log-probabilities, KL terms, log-determinants computed outside networks,
and the sums over pixels and examples. Validation, estimators and log-likelihood accumulation never
enter this context (they stay float32 / float64).

fp16 needs loss scaling against gradient underflow: :class:`torch.amp.GradScaler`, on CUDA only.
bf16 has float32's exponent range and needs no scaling (CPU and recent GPUs).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from core.errors import DGMError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def network_modules(root: nn.Module) -> list[nn.Module]:
    """The modules whose ``forward`` runs under autocast: ``root`` and the outermost descendants that
    define a ``forward``, looking through containers (ModuleList, conditional flows) and flow
    transforms (which are called as transforms, not as modules)."""
    found: list[nn.Module] = [root]

    def visit(module: nn.Module) -> None:
        for child in module.children():
            is_network = type(child).forward is not nn.Module.forward
            if is_network and not isinstance(child, torch.distributions.Transform):
                found.append(child)
            else:
                visit(child)

    visit(root)
    return found


def _to_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    if isinstance(value, tuple):
        return tuple(_to_float32(v) for v in value)
    if isinstance(value, list):
        return [_to_float32(v) for v in value]
    return value


class Precision:
    """Autocast of the networks and (fp16) gradient scaling for training steps on ``device``."""

    def __init__(self, name: str, device: torch.device):
        if name not in ("fp32", "bf16", "fp16"):
            raise DGMError(f"unknown precision {name!r}; choose fp32, bf16 or fp16")
        if name == "fp16" and device.type != "cuda":
            raise DGMError("--precision fp16 needs a CUDA device (its gradient scaler is CUDA-only); use bf16 on CPU")
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DGMError("--precision bf16: this GPU does not support bfloat16; use fp16 or fp32")
        self.name = name
        self.device = device
        self.dtype = DTYPES.get(name)
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @contextmanager
    def networks(self, model: nn.Module) -> Iterator[None]:
        """Within this context, every network of ``model`` (:func:`network_modules`) computes under
        autocast and returns float32 tensors; a no-op in fp32."""
        if not self.enabled:
            yield
            return
        contexts: list[Any] = []

        def enter(_module: nn.Module, _inputs: Any) -> None:
            context = torch.autocast(self.device.type, dtype=self.dtype)
            context.__enter__()
            contexts.append(context)

        def leave(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            contexts.pop().__exit__(None, None, None)
            return _to_float32(output)

        handles = []
        for module in network_modules(model):
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            while contexts:  # a forward that raised never reached its exit hook
                contexts.pop().__exit__(None, None, None)

    # ---- the optimisation step ----------------------------------------------------------------
    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, params: Any, grad_clip: float) -> None:
        """Clip (on unscaled gradients) and step; with fp16 the scaler skips steps with inf/NaN gradients."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
