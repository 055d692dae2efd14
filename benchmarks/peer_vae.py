"""The VAE rows of the peer table: a training step, and importance-sampled log p(x) at large K.

Every contender uses the same networks: copies of one ``models.vae.VAE`` (MLP encoder and decoder,
Bernoulli pixels) initialised from seed 0, so the loss values agree on the same noise. The peers' copies
are ``benchmarks.stock_layers.stock_copy``: torch's ``nn.Linear`` layers, as their own code has, where
ours keeps ``core.cpu_linear.Linear``.

Training step (per-example -ELBO with the analytic KL, batch B; ``benchmarks.training_steps``):

- ``ours``: ``Trainer.train_epoch`` (Pyro's ``AnalyticKLTrace_ELBO`` through the trainer's loop)
- ``plain``: ``benchmarks.svi_overhead.plain_loss`` on a copy of the networks, the same Adam
- ``pythae``: ``pythae.models.VAE`` (``reconstruction_loss="bce"``) whose encoder and decoder wrap a copy
  of our networks: pythae takes log sigma^2 from its encoder, so the wrapper returns 2 log(softplus(.) +
  1e-4), our scale, and sigmoid probabilities from the decoder (pythae's BCE takes probabilities); its
  ``forward(...).loss`` is the same mean -ELBO; the same Adam (pythae's own trainer also uses Adam).

Importance sampling (log (1/K) sum_k p(x, z_k) / q(z_k | x), z_k ~ q(z | x), N images):

- ``ours``: ``evaluation.importance_sampled`` (chunks of examples, passes of samples)
- ``plain``: the same estimator in torch, same chunks and pass sizes, the encoder run once per chunk
- ``pythae``: ``VAE.get_nll(x, n_samples=K, batch_size=min(100, K))`` (pythae's default batch of 100
  samples; its loop runs per image, the encoder on 100 copies of it per batch), under ``torch.no_grad``
  like the others. It returns the mean log-likelihood.

The importance-sampling check replays ours' noise: the z that ours' guide drew are recorded where the
model receives them (a Pyro messenger inside the model: the estimator samples the guide's cached
distributions, so the guide itself runs once per chunk, not once per pass), and plain and pythae score
exactly those z (pythae's ``_sample_gauss`` is
replaced on the instance for the check only), so all three must give the same mean log p(x).
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from pyro.poutine.messenger import Messenger

from benchmarks.side_by_side import Comparison, Contender
from benchmarks.stock_layers import stock_copy
from benchmarks.svi_overhead import plain_loss
from benchmarks.training_steps import plain_steps, seeded, trainer_steps
from data.specs import DatasetSpec
from evaluation.estimators import examples_per_chunk, importance_sampled, log_mean_exp, samples_per_pass
from inference.training.config import TrainConfig
from models.vae import VAE, VAEConfig

CHECK_SEED = 123
PYTHAE_BATCH = 100  # pythae's default batch of samples in get_nll


def new_vae(spec: DatasetSpec, hidden: tuple[int, ...], latent_dim: int, device: torch.device) -> VAE:
    """Our MLP VAE with Bernoulli pixels, initialised from seed 0."""
    torch.manual_seed(0)
    return VAE(VAEConfig(latent_dim=latent_dim, hidden=hidden), spec).to(device)


def pythae_vae(pythae: ModuleType, vae: VAE) -> torch.nn.Module:
    """A ``pythae.models.VAE`` computing our VAE's -ELBO with ``vae``'s networks (module docstring)."""
    base_utils = pythae.models.base.base_utils
    networks = pythae.models.nn

    class Encoder(networks.BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = vae.encoder

        def forward(self, x: torch.Tensor) -> Any:
            loc, scale, _ = vae.split_outputs(self.net(x / (vae.spec.levels - 1)))
            return base_utils.ModelOutput(embedding=loc, log_covariance=2 * torch.log(scale))

    class Decoder(networks.BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = vae.decoder

        def forward(self, z: torch.Tensor) -> Any:
            return base_utils.ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    config = pythae.models.VAEConfig(input_dim=tuple(vae.spec.shape), latent_dim=vae.latent_dim,
                                     reconstruction_loss="bce")
    return pythae.models.VAE(config, encoder=Encoder(), decoder=Decoder())


def vae_step(spec: DatasetSpec, hidden: tuple[int, ...], latent_dim: int, x_all: torch.Tensor,
             config: TrainConfig, peers: dict[str, ModuleType], device: torch.device) -> list[Contender]:
    """Contenders for the training step over ``x_all`` (one call = x_all.shape[0] / batch_size steps)."""
    ours = new_vae(spec, hidden, latent_dim, device)
    plain = stock_copy(ours)
    steps = x_all.shape[0] // config.batch_size
    check_x = x_all[:config.batch_size]
    run, loss = trainer_steps(ours, x_all, config, device)
    contenders = [
        Contender("ours", run, seeded(loss, check_x, CHECK_SEED), ours, steps, "Trainer.train_epoch"),
        Contender("plain", plain_steps(lambda x: plain_loss(plain, x), plain.parameters(), x_all, config),
                  seeded(lambda x: plain_loss(plain, x), check_x, CHECK_SEED), plain, steps,
                  "copy of our networks, hand-written -ELBO")]
    if "pythae" in peers:
        model = pythae_vae(peers["pythae"], stock_copy(plain))

        def pythae_loss(x: torch.Tensor) -> torch.Tensor:
            return model({"data": x}).loss

        contenders.append(Contender("pythae", plain_steps(pythae_loss, model.parameters(), x_all, config),
                                    seeded(pythae_loss, check_x, CHECK_SEED), model, steps,
                                    "pythae.models.VAE wrapping a copy of our networks"))
    return contenders


class SiteRecorder(Messenger):
    """Records the value of every sample site called ``name`` (the z each pass of the estimator draws)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.values: list[torch.Tensor] = []

    def _postprocess_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] == self.name:
            self.values.append(msg["value"].detach())


def assemble_passes(values: list[torch.Tensor], num_samples: int) -> torch.Tensor:
    """Passes (k_i, n_c, L) in the estimator's order (chunks of examples, passes within a chunk) -> (K, N, L)."""
    chunks, current, drawn = [], [], 0
    for value in values:
        current.append(value)
        drawn += value.shape[0]
        if drawn == num_samples:
            chunks.append(torch.cat(current))
            current, drawn = [], 0
    return torch.cat(chunks, dim=1)


@torch.no_grad()
def plain_iwae(vae: VAE, x: torch.Tensor, num_samples: int, z: torch.Tensor | None = None) -> torch.Tensor:
    """log (1/K) sum_k w_k per example (float64, (N,)) in torch, the encoder once per chunk of examples.

    Chunks and passes as ``evaluation.estimators``; ``z`` (K, N, L) replaces the draws (for the check)."""
    n_total, per_example = x.shape[0], x[0].numel()
    n_chunk = examples_per_chunk(n_total, per_example, num_samples)
    estimates = []
    for start in range(0, n_total, n_chunk):
        xc = x[start:start + n_chunk]
        loc, scale = vae.encode(xc)
        q = torch.distributions.Normal(loc, scale)
        k_pass = samples_per_pass(xc.shape[0], per_example)
        log_w = torch.empty(xc.shape[0], num_samples, dtype=torch.float64)
        for k0 in range(0, num_samples, k_pass):
            k = min(k_pass, num_samples - k0)
            zk = loc + scale * torch.randn((k,) + loc.shape, device=loc.device) if z is None \
                else z[k0:k0 + k, start:start + n_chunk]
            logits = vae.decoder(zk)
            log_px = -F.binary_cross_entropy_with_logits(logits, xc.expand_as(logits), reduction="none").flatten(2).sum(-1)
            log_pz = -0.5 * (zk ** 2).sum(-1) - 0.5 * zk.shape[-1] * math.log(2 * math.pi)
            log_w[:, k0:k0 + k] = (log_px + log_pz - q.log_prob(zk).sum(-1)).T.to("cpu", torch.float64)
        estimates.append(log_mean_exp(log_w))
    return torch.cat(estimates)


def replayed(z: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    """The z (K, N, L) in pythae's get_nll order: per image, batches of ``batch`` samples."""
    for n in range(z.shape[1]):
        for k0 in range(0, z.shape[0], batch):
            yield z[k0:k0 + batch, n]


def importance_sampling(spec: DatasetSpec, hidden: tuple[int, ...], latent_dim: int, x: torch.Tensor,
                        check_x: torch.Tensor, num_samples: int, peers: dict[str, ModuleType],
                        device: torch.device) -> list[Contender]:
    """Contenders for log p(x) of the images ``x`` at K = ``num_samples`` (checked on ``check_x``)."""
    vae = new_vae(spec, hidden, latent_dim, device).eval()
    plain = stock_copy(vae)
    drawn: dict[str, torch.Tensor] = {}

    def ours_value() -> torch.Tensor:
        recorder = SiteRecorder("z")

        def model(images: torch.Tensor) -> None:
            with recorder:
                vae.model(images)

        torch.manual_seed(CHECK_SEED)
        estimates = importance_sampled(model, vae.guide, check_x, num_samples, max_plate_nesting=vae.max_plate_nesting)
        drawn["z"] = assemble_passes(recorder.values, num_samples)
        return estimates.mean()

    contenders = [
        Contender("ours", lambda: importance_sampled(vae.model, vae.guide, x, num_samples), ours_value, vae,
                  matched="evaluation.importance_sampled"),
        Contender("plain", lambda: plain_iwae(plain, x, num_samples),
                  lambda: plain_iwae(plain, check_x, num_samples, drawn["z"]).mean(), plain,
                  matched="a copy of our networks; scores ours' recorded z")]
    if "pythae" in peers:
        model = pythae_vae(peers["pythae"], stock_copy(vae)).eval()
        batch = min(PYTHAE_BATCH, num_samples)

        def get_nll(images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.tensor(model.get_nll(images, n_samples=num_samples, batch_size=batch), dtype=torch.float64)

        def pythae_value() -> torch.Tensor:
            feed = replayed(drawn["z"], batch)
            model._sample_gauss = lambda mu, std: (next(feed), None)  # check only: score ours' z
            try:
                return get_nll(check_x)
            finally:
                del model._sample_gauss

        contenders.append(Contender("pythae", lambda: get_nll(x), pythae_value, model,
                                    matched="pythae.models.VAE wrapping a copy of our networks; scores ours' z"))
    return contenders
