"""The adversarial training loop of GANs: alternating discriminator and generator updates.

Per batch of real images x (scaled to [0, 1]) and fresh z ~ N(0, I):

    discriminator step   minimise L_D(D(x), D(G(z))) (+ lambda * gradient penalty for wgan_gp)
    generator step       every ``d_steps``-th batch: minimise L_G(D(G(z))) with the updated D,
                         on the same G(z) (one generator pass per batch, as the DCGAN reference does)

(``inference.objectives.adversarial_losses`` has the losses.) Separate Adam optimisers (and learning-rate
schedules) for the two players. The run directory is the SVI trainer's: ``metrics.csv`` one row
per epoch, ``checkpoint.pt`` every epoch, ``best.pt`` at the best validation criterion, both
written atomically and loadable with ``torch.load(weights_only=True)``; ``--resume`` restores both
networks, both optimisers and schedulers and every RNG state, so it reproduces an uninterrupted run.

``metrics.csv`` columns: ``epoch``, ``step`` (discriminator updates so far), ``train_loss`` (the
generator's loss, mean over the epoch's generator steps), ``train_d_loss`` (the discriminator's,
penalty included), ``train_d_real`` and ``train_d_fake`` (mean D output on real and generated
images), ``val_fd`` and ``val_class_entropy`` (see below), ``seconds``.

Validation criterion: a GAN has no likelihood to validate and its losses do not measure sample
quality (they describe a moving two-player game). ``best.pt`` is therefore chosen by ``val_fd``,
the Frechet distance in the project classifier's feature space (``evaluation.sample_quality``)
between ``val_samples`` generated images (fixed noise) and as many validation images, the same
metric that judges every model on the test split. Lower is better.

Under torchrun (``inference.training.distributed``) the generator and the discriminator's loss run in
DistributedDataParallel; z and the gradient penalty's mixing weights are drawn for the whole global
batch and sliced per process, and each process's mean losses are weighted by its share of the
global batch, so P processes take the steps one process would (dropout masks excepted: they are
drawn per process).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.errors import DGMError, TrainingDiverged
from core.progress import progress_bar
from core.run_dir import CHECKPOINT, METRICS, MetricsLog
from data.dataset import Dataset
from inference.objectives.adversarial_losses import AdversarialLoss, adversarial_loss, gradient_penalty
from inference.training.distributed import SINGLE_PROCESS, DistributedContext, Shard, global_noise
from inference.training.precision import Precision
from inference.training.config import TrainConfig
from inference.training.adversarial_figures import GANFigures
from inference.training.epoch_loop import VAL_SEED, EpochLoop, TrainState
from inference.training.judge import Judge, SampleCriterion
from inference.training.registry import register_trainer
from inference.training.optimizers import make_scheduler


class Generate(torch.nn.Module):
    """``forward(z)`` = G(z) of ``gan`` (its generator's parameters only), so DDP can wrap the generator."""

    def __init__(self, gan: Any):
        super().__init__()
        self.generator = gan.generator
        self._generate = gan.generate

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._generate(z)


class DiscriminatorLoss(torch.nn.Module):
    """``forward(real, fake, mix)`` = (L_D (+ penalty), D(real), D(fake)): the discriminator's loss as a forward."""

    def __init__(self, discriminator: torch.nn.Module, loss: AdversarialLoss, gp_weight: float):
        super().__init__()
        self.discriminator = discriminator
        self.loss = loss
        self.gp_weight = gp_weight

    def forward(self, real: torch.Tensor, fake: torch.Tensor,
                mix: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d_real, d_fake = self.discriminator(real), self.discriminator(fake)
        d_loss = self.loss.discriminator(d_real, d_fake)
        if self.loss.gradient_penalty:
            d_loss = d_loss + self.gp_weight * gradient_penalty(self.discriminator, real, fake, mix)
        return d_loss, d_real, d_fake


class AdversarialTrainer(EpochLoop):
    """Train a GAN (generator + discriminator) adversarially, writing into ``run_dir``.

    The model provides ``generator``, ``discriminator``, ``generate(z)``, ``to_unit(x)``, ``latent_dim``
    and the game's options in its config (``loss``, ``d_steps``, ``d_lr``, ``adam_betas``, ``gp_weight``,
    ``val_samples``: ``models.gan.model.GANConfig``). ``judge`` (``inference.training.judge``) provides the
    validation criterion (FD of ``val_samples`` samples against as many validation images, in the
    classifier's features; none when ``val_samples`` is 0 or there is no judge: ``best.pt`` then follows
    the last epoch), the classifier of the interpolation figure, and the final sample-quality evaluation.
    """

    def __init__(self, model: Any, config: TrainConfig, dataset: Dataset, run_dir: Path, model_name: str,
                 device: torch.device, dist: DistributedContext = SINGLE_PROCESS, judge: Judge | None = None):
        dist.check_batch_size(config.batch_size)
        self.dist = dist
        self.judge = judge
        self.precision = Precision(config.precision, device)
        self.model = model.to(device)
        self.gan = model.config
        self.loss = adversarial_loss(self.gan.loss)
        self.config = config
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.model_name = model_name
        self.device = device
        self.criterion: SampleCriterion | None = None
        classifier = None
        if judge is not None and dist.is_main:  # rank 0 alone validates and draws figures
            # the classifier is trained once per family if missing; its training keeps the global RNG untouched
            classifier = judge.classifier(dataset)
            if self.gan.val_samples:
                self.criterion = judge.sample_criterion(dataset, self.gan.val_samples, device)
        self.figures = GANFigures(model, dataset.spec, self.run_dir, config, model_name, classifier)
        betas = tuple(self.gan.adam_betas)
        self.g_optimizer = torch.optim.Adam(model.generator.parameters(), lr=config.lr, betas=betas)
        self.d_optimizer = torch.optim.Adam(model.discriminator.parameters(), lr=self.gan.d_lr or config.lr,
                                            betas=betas)
        self.g_scheduler = make_scheduler(self.g_optimizer, config)
        self.d_scheduler = make_scheduler(self.d_optimizer, config)
        self.metrics = MetricsLog(self.run_dir / METRICS)
        self.state = TrainState()
        # the players as forwards; in DistributedDataParallel under torchrun
        self.generate = dist.wrap(Generate(model), device)
        self.d_loss = dist.wrap(DiscriminatorLoss(model.discriminator, self.loss, self.gan.gp_weight), device)

    @classmethod
    def check_options(cls, config: TrainConfig, model: Any) -> None:
        if config.patience and not model.config.val_samples:
            raise DGMError("--patience needs a validation criterion: set --val-samples above 0")

    def describe(self) -> str:
        n_g = sum(p.numel() for p in self.model.generator.parameters())
        n_d = sum(p.numel() for p in self.model.discriminator.parameters())
        return (f"{self.gan.arch}, {self.gan.loss} loss: generator {n_g:,} and discriminator {n_d:,} parameters")

    def final_evaluation(self, best: Any) -> None:
        """Sample quality of ``best.pt`` against the test split, with the data set's floor."""
        if self.judge is None:
            return
        result = self.judge.evaluate_samples(best, self.device)
        s, f = result["samples"], result["floor"]
        print(f"test sample quality of best.pt (epoch {best.epoch}, n={s['n']}): FD {s['fd']:.3f} "
              f"(floor {f['fd']:.3f}), KID {s['kid']:.5f} (floor {f['kid']:.5f}), class entropy "
              f"{s['class_entropy']:.3f} nats (floor {f['class_entropy']:.3f})", flush=True)

    # ---- checkpoints -------------------------------------------------------------------------
    def restorable(self) -> dict[str, Any]:
        return {"optimizer_state": self.g_optimizer, "d_optimizer_state": self.d_optimizer,
                "scheduler_state": self.g_scheduler, "d_scheduler_state": self.d_scheduler}

    # ---- one epoch ---------------------------------------------------------------------------
    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: Any) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss)
        self.precision.step(optimizer, params, self.config.grad_clip)

    def _noise(self, kind: str, shape: tuple[int, ...], shard: Shard, name: str) -> torch.Tensor:
        """Standard noise of this process's rows: N(0, I) or U[0, 1) drawn for the whole global batch."""
        return global_noise(kind, shape, 0, shard, ("gan", name, self.config.seed, self.state.step), self.device)

    def _global_means(self, values: list[torch.Tensor], shard: Shard) -> list[float]:
        """Means over the global batch of per-process means (weighted by each process's share)."""
        if not self.dist.enabled:
            return [float(v.detach()) for v in values]
        local = torch.stack([v.detach().float() for v in values]) * (shard.index.shape[0] / shard.global_size)
        return self.dist.all_reduce_sum(local).tolist()

    def _check(self, value: torch.Tensor, player: str, epoch: int) -> None:
        if not torch.isfinite(value):
            kept = f"last good checkpoint: epoch {self.state.epoch} in {self.run_dir / CHECKPOINT}" \
                if (self.run_dir / CHECKPOINT).exists() else "no checkpoint was written yet"
            raise TrainingDiverged(f"the {player} loss became {float(value)} at step {self.state.step + 1} "
                                   f"(epoch {epoch}); lower --lr or try --loss hinge; {kept}")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the shuffled training data; returns the epoch's mean losses and D outputs."""
        cfg, model = self.config, self.model
        generator, discriminator = model.generator, model.discriminator
        x_all, batches = self.training_batches(epoch)
        dist = self.dist
        dist.reseed(cfg.seed, epoch)
        model.train()
        sums = {"g": 0.0, "d": 0.0, "real": 0.0, "fake": 0.0}
        g_steps = 0
        bar = progress_bar(batches, desc=f"epoch {epoch}/{cfg.epochs}",
                           enabled=dist.is_main and cfg.progress == "epochs")
        for index in bar:
            shard = dist.shard(index)
            real = model.to_unit(x_all[shard.index.to(self.device)])
            n = real.shape[0]
            # each process's mean loss times P * (its share of the step's examples): DDP's average over the
            # P processes then gives the gradient of the global batch's mean
            weight = dist.world_size * n / shard.global_size
            mix = None
            if dist.enabled:
                z = self._noise("normal", (n, model.latent_dim), shard, "z")
                if self.loss.gradient_penalty:
                    mix = self._noise("uniform", (n, *([1] * (real.dim() - 1))), shard, "mix")
            else:
                z = torch.randn(n, model.latent_dim, device=self.device)
            g_turn = (self.state.step + 1) % self.gan.d_steps == 0
            with self.precision.networks(model):
                with torch.set_grad_enabled(g_turn):  # the generator's graph is kept only when it moves next
                    fake = self.generate(z)
                # discriminator: minimise L_D on real images and detached samples
                d_loss, d_real, d_fake = self.d_loss(real, fake.detach(), mix)
                d_value, real_mean, fake_mean = self._global_means([d_loss, d_real.mean(), d_fake.mean()], shard)
                self._check(torch.tensor(d_value), "discriminator", epoch)
                self._step(self.d_optimizer, d_loss * weight, discriminator.parameters())
                sums["d"] += d_value
                sums["real"] += real_mean
                sums["fake"] += fake_mean
                if g_turn:  # generator: minimise L_G against the updated discriminator, D's weights frozen
                    discriminator.requires_grad_(False)
                    g_loss = self.loss.generator(discriminator(fake))
                    discriminator.requires_grad_(True)
                    (g_value,) = self._global_means([g_loss], shard)
                    self._check(torch.tensor(g_value), "generator", epoch)
                    self._step(self.g_optimizer, g_loss * weight, generator.parameters())
                    sums["g"] += g_value
                    g_steps += 1
            self.state.step += 1
            if self.state.step == 1:
                dist.broadcast_module(model)
        self.g_scheduler.step()
        self.d_scheduler.step()
        n = len(batches)
        return {"train_loss": sums["g"] / g_steps if g_steps else float("nan"), "train_d_loss": sums["d"] / n,
                "train_d_real": sums["real"] / n, "train_d_fake": sums["fake"] / n}

    def validate(self) -> dict[str, float]:
        """``val_fd`` and ``val_class_entropy`` of ``val_samples`` generated images (fixed noise) against as many
        validation images."""
        if self.criterion is None:
            return {}
        scores = self.criterion.score_model(self.model, VAL_SEED, self.device)
        return {"val_fd": scores["fd"], "val_class_entropy": scores["class_entropy"]}

    def objective_of(self, row: dict[str, Any]) -> float:
        """Higher is better: minus the validation Fréchet distance (the latest epoch when there is none)."""
        return -row["val_fd"] if "val_fd" in row else float(row["epoch"])


register_trainer("adversarial", AdversarialTrainer)
