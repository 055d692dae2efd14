"""``core.seeding.stable_seed``: the one seed derivation, the same in every process and Python run."""
from __future__ import annotations

import subprocess
import sys

from core.seeding import stable_seed
from inference.training.distributed import stable_seed as distributed_stable_seed


def test_stable_seed_is_deterministic_distinct_per_key_and_63_bit():
    seeds = {stable_seed("evaluate", 0, proposal, k) for proposal in ("guide", "prior") for k in (1, 10, 100)}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)
    assert stable_seed("evaluate", 0, "guide", 10) != stable_seed("evaluate", 1, "guide", 10)
    assert distributed_stable_seed is stable_seed  # the training's global-batch noise uses the same helper
    other = subprocess.run([sys.executable, "-c", "from core.seeding import stable_seed; print(stable_seed('a', 1))"],
                           capture_output=True, text=True, check=True)
    assert int(other.stdout) == stable_seed("a", 1)  # not Python's salted hash
