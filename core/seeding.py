"""Seeding, seeds derived from keys, and random-number-generator state as plain tensors (loadable with
weights_only=True)."""
from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import pyro
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch (CPU and CUDA) and Pyro from one integer."""
    pyro.set_rng_seed(seed)  # seeds random, numpy and torch together


def stable_seed(*key: Any) -> int:
    """A 63-bit seed from ``key`` that is the same in every process and every Python run (unlike ``hash``).

    The one way the project derives seeds from a user's seed (``stable_seed("evaluate", seed, "guide", k)``):
    distinct keys give unrelated streams, so no two passes share noise by an accident of arithmetic."""
    digest = hashlib.blake2b("/".join(map(str, key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def rng_state() -> dict[str, Any]:
    """Every global RNG state as tensors: torch CPU, each CUDA device, Python ``random`` and NumPy."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(list(internal), dtype=torch.int64),
        "python_version": int(version),
        "python_gauss": float("nan") if gauss is None else float(gauss),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    gauss = state["python_gauss"]
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()),
                     None if gauss != gauss else gauss))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
