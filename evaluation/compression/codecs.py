"""Which lossless coder a trained model gets, its options, and why some models get none.

* ``arm-ans`` (``arm_coding``): ``pixelcnn``, ``gated_pixelcnn``, ``causal_conv1d`` with Bernoulli,
  categorical or logistic-mixture heads; ANS pixel by pixel through the cached sampler's path; the rate
  is the exact NLL.
* ``vae-bits-back`` (``bits_back``): ``vae`` with its Gaussian posterior and N(0, I) prior, Bernoulli,
  categorical or logistic-mixture decoders, MLP or conv networks; the net rate (after the initial bits)
  is -ELBO.

Refused, each with its reason (``unsupported_reason``): flows and PPCA (densities of dequantized data:
they need bits-back over the dequantization noise as well, Ho et al. 2019's local bits-back coding, not
implemented), GANs (the guide is the prior: the code would cost -log p(x | z) of a prior draw), VAEs with
the dequantized Gaussian decoder, flow posteriors or flow priors, and class-conditional ARMs (the labels
are not coded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from core.errors import DGMError
from evaluation.compression.arm_coding import decode_arm, encode_arm
from evaluation.compression.bits_back import decode_vae, encode_vae, initial_word_count
from evaluation.compression.latent_buckets import DEFAULT_LATENT_BITS, latent_buckets
from models.arm.autoregressive import AutoregressiveModel
from models.ppca import PPCA
from models.vae import VAE

ARM_CODER = "arm-ans"
VAE_CODER = "vae-bits-back"

_DEQUANTIZED = ("is a density of dequantized data x + u; a lossless coder would also need bits-back over the "
                "dequantization noise u (local bits-back coding, Ho et al. 2019), which is not implemented")
UNSUPPORTED_MODELS = {
    "flow": "a flow " + _DEQUANTIZED,
    "ppca": "PPCA on images " + _DEQUANTIZED,
    "gan": ("a GAN's guide is its prior, so bits-back would pop z from the prior and pay -log p(x | z) of a prior "
            "draw (the naive single-sample bound, thousands of bits an image): no coder"),
}


@dataclass(frozen=True)
class CoderOptions:
    """``--batch-size`` (ARM images per network pass), ``--lanes`` (VAE chains), ``--latent-bits`` (VAE b)."""

    batch_size: int = 32
    lanes: int = 1
    latent_bits: int = DEFAULT_LATENT_BITS

    def validate(self) -> "CoderOptions":
        """Refuse impossible options with a one-line error; returns self."""
        if self.batch_size < 1 or self.lanes < 1:
            raise DGMError(f"--batch-size and --lanes must be at least 1, got {self.batch_size} and {self.lanes}")
        latent_buckets(self.latent_bits)  # checks the range of b
        return self


def unsupported_reason(model: Any, model_name: str) -> str | None:
    """Why ``model`` has no coder (one sentence), or None when it has one."""
    if isinstance(model, AutoregressiveModel):
        if model.num_classes:
            return ("a class-conditional ARM needs the labels, which the file does not code; "
                    "only unconditional ARMs are supported")
        return None
    if isinstance(model, VAE):
        if model.head.dequantized:
            return ("the VAE's gaussian decoder is a density of dequantized pixels (u is a latent of its story); "
                    "bits-back would have to code u as well: use a bernoulli, categorical or logistic_mixture decoder")
        if model.config.has_posterior_flow:
            return ("bits-back needs Q(bucket | x) dimension by dimension; a flow posterior has no per-dimension "
                    "CDF in the prior's buckets (not implemented)")
        if model.config.has_prior_flow:
            return ("equal-prior-mass buckets need the prior's per-dimension quantiles; a flow prior has none in "
                    "closed form (not implemented)")
        return None
    if isinstance(model, PPCA) and model.discrete and not model.dequantized:
        return ("PPCA of the bin centres is a density of continuous values; a lossless coder needs each discrete "
                "image's probability, a Gaussian integral over its bin with no closed form (not implemented)")
    return UNSUPPORTED_MODELS.get(model_name, f"no lossless coder for {model_name!r} models")


def coder_name(model: Any, model_name: str) -> str:
    """``arm-ans`` or ``vae-bits-back`` for ``model``; a one-line error naming the reason otherwise."""
    reason = unsupported_reason(model, model_name)
    if reason is not None:
        raise DGMError(f"cannot compress with a {model_name!r} model: {reason}")
    return ARM_CODER if isinstance(model, AutoregressiveModel) else VAE_CODER


def encode(model: Any, model_name: str, x: torch.Tensor, options: CoderOptions,
           progress: Callable[[int], None] | None = None) -> tuple[list[np.ndarray], dict[str, Any], Any]:
    """Images (N, C, H, W) -> (streams, the header's ``coder`` entry, the coder's statistics)."""
    name = coder_name(model, model_name)
    options.validate()
    if name == ARM_CODER:
        words, stats = encode_arm(model, x, options.batch_size, progress)
        return [words], {"name": name, "batch_size": options.batch_size}, stats
    buckets = latent_buckets(options.latent_bits)
    lanes = min(options.lanes, x.shape[0])
    streams, stats = encode_vae(model, x, lanes, buckets, progress)
    entry = {"name": name, "lanes": lanes, "latent_bits": buckets.bits,
             "initial_words": initial_word_count(model.latent_dim, buckets)}
    return streams, entry, stats


def decode(model: Any, model_name: str, coder: dict[str, Any], streams: list[np.ndarray], count: int,
           progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """The streams of a file -> its ``count`` images (count, C, H, W) on the CPU, by the header's ``coder``."""
    name = coder_name(model, model_name)
    if coder.get("name") != name:
        raise DGMError(f"the file was written by the {coder.get('name')!r} coder, but this model uses {name!r}")
    try:
        options = ({"batch_size": int(coder["batch_size"])} if name == ARM_CODER else
                   {"lanes": int(coder["lanes"]), "latent_bits": int(coder["latent_bits"]),
                    "initial_words": int(coder["initial_words"])})
    except (KeyError, TypeError, ValueError) as exc:
        raise DGMError(f"the file's coder options are unreadable ({type(exc).__name__}: {exc}): "
                       "corrupt header") from None
    if name == ARM_CODER:
        if len(streams) != 1:
            raise DGMError(f"an {ARM_CODER} file holds one stream, this one {len(streams)}: corrupt header")
        return decode_arm(model, streams[0], count, options["batch_size"], progress)
    return decode_vae(model, streams, count, options["lanes"], latent_buckets(options["latent_bits"]),
                      options["initial_words"], progress)
