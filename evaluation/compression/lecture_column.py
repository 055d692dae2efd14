"""The lecture table's "Compression" column, measured: a real file's bits/dim per model, or "no" and why.

``compression_entry(run, workdir, limit)`` compresses the run's first ``limit`` test images into
``workdir``, decodes the file again (bit for bit, checksum verified) and returns the measured rate next to
the model's own NLL estimate of the same images; a model without a coder gets ``"no: <reason>"``
(``codecs.unsupported_reason``). Notebook 03 and the README's table read it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from inference.training.load_run import LoadedRun
from evaluation.compression.arm_coding import ARMCodeStats
from evaluation.compression.codecs import CoderOptions, unsupported_reason
from evaluation.compression.lossless import round_trip, split_images


def compression_entry(run: LoadedRun, workdir: str | Path, limit: int | None = 100,
                      options: CoderOptions | None = None) -> dict[str, Any]:
    """{"compression": "yes"/"no: reason", "file bits/dim", "rate bits/dim", "rate", "model code length bits/dim"}.

    The rate is the payload (ARMs) or the bits-back net rate, payload minus initial bits (VAEs); the file
    bits/dim include the header. "model code length" is what the coder's own tables say the images cost
    (exact NLL for ARMs, the ideal bits-back code length of the coded buckets for VAEs). Decoding is checked
bit for bit (``lossless.round_trip``), so "yes" means a file was written and decoded exactly."""
    reason = unsupported_reason(run.model, run.config["model"])
    if reason is not None:
        return {"compression": f"no: {reason}"}
    x = split_images(run, "test", 1, limit)
    n, dim = x.shape[0], run.model.spec.dim
    path = Path(workdir) / f"{run.run_dir.name}.dgmz"
    device = torch.device("cpu")
    result, _ = round_trip(run, x, path, options or CoderOptions(), {"split": "test", "limit": limit}, device)
    stats = result.stats
    if isinstance(stats, ARMCodeStats):
        rate_bits, rate, ideal = 8 * result.payload_bytes, "payload (ANS)", float(stats.ideal_bits.sum())
    else:
        rate_bits = 8 * result.payload_bytes - stats.initial_bits
        rate, ideal = "bits-back net rate", float(stats.ideal_net_bits.sum())
    return {"compression": "yes", "file bits/dim": 8 * result.file_bytes / (n * dim),
            "rate bits/dim": rate_bits / (n * dim), "rate": rate, "model code length bits/dim": ideal / (n * dim),
            "images": n, "nats an image": rate_bits * math.log(2.0) / n}
