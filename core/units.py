"""Units for people: NLL in nats and bits/dim of the discrete data (``shared/CONVENTIONS.md``)."""
from __future__ import annotations

import math


def bits_per_dim(nll_nats: float, dim: int) -> float:
    """bits/dim = NLL / (D ln 2), D the number of data dimensions."""
    return nll_nats / (dim * math.log(2.0))
