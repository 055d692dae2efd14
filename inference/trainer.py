"""The one training loop for every SVI-trained model (VAEs, flows, ARMs: any model/guide pair).

Each step minimises ``objective.differentiable_loss(model.model, model.guide, x) / B`` with a torch
optimiser (the same gradient as ``pyro.infer.SVI.step``; a torch optimiser keeps its state a plain
``state_dict`` and gives us LR schedules). Per epoch: validation with a fixed seed, a row of
``metrics.csv``, ``best.pt`` when the validation objective improves, ``checkpoint.pt`` always,
figures. ``--resume`` restores weights, optimiser, scheduler and every RNG state, so a resumed run
reproduces an uninterrupted one exactly.

Under torchrun the loss runs in DistributedDataParallel with this process's share of each global
batch and noise drawn for the global batch (``inference.distributed``), so P processes take the
steps one process would; ``--precision`` runs the networks under autocast (``inference.precision``).
"""
from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from core.errors import DGMError, TrainingDiverged
from core.run_dir import CHECKPOINT, METRICS, MetricsLog, load_checkpoint
from data.dataset import Dataset, epoch_batches
from evaluation.units import bits_per_dim
from inference.distributed import SINGLE_PROCESS, DistributedContext, GlobalNoise, PyroLoss, Shard
from inference.epoch_loop import EpochLoop, TrainState
from inference.precision import Precision
from inference.train_config import TrainConfig

VAL_SEED = 12345  # validation noise is the same every epoch, so epochs compare fairly


#: Burda, Grosse & Salakhutdinov (2016): stage i = 0..7 lasts 3^i epochs at lr * 10^(-i/7); the stages
#: end after epochs 1, 4, 13, 40, 121, 364, 1093 (and 3280)
BURDA_MILESTONES = [sum(3 ** j for j in range(i + 1)) for i in range(7)]
BURDA_GAMMA = 10 ** (-1 / 7)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate schedule: constant, cosine to 0 at ``epochs``, exponential decay, or Burda's
    stages (lr * 10^(-i/7) for 3^i epochs)."""
    if config.lr_schedule == "burda":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=BURDA_MILESTONES, gamma=BURDA_GAMMA)
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def make_adam(params: Any, config: TrainConfig) -> torch.optim.Adam:
    """Adam with ``--lr`` and ``--adam-eps``; the fused kernel (one pass over all parameters: 4x faster
    than the per-tensor loop for a 425k-parameter VAE on one CPU thread) where this torch has it."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=config.lr, eps=config.adam_eps, fused=True)
    except (RuntimeError, TypeError):  # older torch, or a device without the fused kernel
        return torch.optim.Adam(params, lr=config.lr, eps=config.adam_eps)


def first_nonfinite_module(model: torch.nn.Module, run: Callable[[], Any]) -> str:
    """Re-run ``run`` with forward hooks and name the first module whose output is NaN or infinite."""
    found: list[str] = []
    names = {module: name for name, module in model.named_modules()}

    def hook(module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        tensors = output if isinstance(output, (tuple, list)) else (output,)
        if not found and any(isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()
                             for t in tensors):
            found.append(names[module] or type(module).__name__)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            run()
    except Exception:  # the diagnosis must never hide the original problem
        pass
    finally:
        for h in handles:
            h.remove()
    bad_params = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if found:
        return f"first non-finite output in layer '{found[0]}'"
    if bad_params:
        return f"non-finite parameter '{bad_params[0]}'"
    return "no layer output was non-finite (the likelihood or KL term overflowed)"


class Trainer(EpochLoop):
    """Train ``model`` on ``dataset`` with ``objective``, writing into ``run_dir``."""

    def __init__(self, model: Any, objective: Any, config: TrainConfig, dataset: Dataset, run_dir: Path,
                 model_name: str, device: torch.device, dist: DistributedContext = SINGLE_PROCESS):
        dist.check_batch_size(config.batch_size)
        self.dist = dist
        self.precision = Precision(config.precision, device)
        self.model = model.to(device)
        self.objective = objective
        self.validation_objective = model.validation_objective()
        self.config = config
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.model_name = model_name
        self.device = device
        self.optimizer = make_adam(self.model.optimizer_groups(config.lr), config)  # per-group rates (VAE flow priors)
        self.scheduler = make_scheduler(self.optimizer, config)
        self.metrics = MetricsLog(self.run_dir / METRICS)
        self.state = TrainState()
        #: the summed loss as a module's forward; in DistributedDataParallel under torchrun
        self.pyro_loss = PyroLoss(self.model, objective)
        self.loss_module = dist.wrap(self.pyro_loss, device, static_graph=True)

    # ---- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        return {**self.loop_state(), "model": self.model_name, "model_state": self.model.state_dict(),
                "optimizer_state": self.optimizer.state_dict(), "scheduler_state": self.scheduler.state_dict()}

    def resume(self) -> None:
        """Restore everything from ``checkpoint.pt`` and drop metrics rows written after it."""
        from core.load_run import load_state

        path = self.run_dir / CHECKPOINT
        state = load_checkpoint(path, map_location=self.device)
        load_state(self.model, state, path, self.model_name)
        saved_groups = len(state["optimizer_state"]["param_groups"])
        if saved_groups != len(self.optimizer.param_groups):  # e.g. a flow-prior run from before its own group
            raise DGMError(f"{path} holds an optimiser with {saved_groups} parameter group(s), this model trains "
                           f"{len(self.optimizer.param_groups)} (a VAE with a flow prior trained before "
                           "--prior-flow-lr-scale existed); train it anew")
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.scheduler.load_state_dict(state["scheduler_state"])
        self.restore_loop_state(state)

    # ---- one epoch ---------------------------------------------------------------------------
    def _loss_sum(self, x: torch.Tensor, shard: Shard, module: torch.nn.Module | None = None) -> torch.Tensor:
        """Summed loss of this process's examples x; under torchrun with noise drawn for the global batch."""
        noise = GlobalNoise(shard, ("svi", self.config.seed, self.state.step)) if self.dist.enabled else nullcontext()
        with noise, self.precision.networks(self.model):
            return (module or self.loss_module)(x)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the shuffled training data: ``train_loss``, the mean loss per example (nats)."""
        cfg = self.config
        x_all = self.dataset.train_epoch(epoch, cfg.seed).to(self.device)
        batches = epoch_batches(x_all.shape[0], cfg.batch_size, cfg.seed, epoch)
        dist = self.dist
        dist.reseed(cfg.seed, epoch)
        self.model.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, mininterval=1.0, file=sys.stderr,
                   disable=None if dist.is_main else True)
        for i, index in enumerate(bar):
            shard = dist.shard(index)
            x = x_all[shard.index.to(self.device)]
            if hasattr(self.objective, "kl_weight"):
                self.objective.kl_weight = self.model.kl_weight(epoch - 1 + i / len(batches))
            rng_before = torch.get_rng_state()
            loss_sum = self._loss_sum(x, shard)
            # P * (this process's sum) / B_step: DDP's average over P processes gives the global mean's gradient
            loss = loss_sum * dist.world_size / shard.global_size
            step_loss = dist.all_reduce_sum(loss_sum.detach()) / shard.global_size  # the global mean, every rank
            if not torch.isfinite(step_loss):
                self._diverged(step_loss, x, shard, rng_before, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.backward(loss)
            self.precision.step(self.optimizer, self.model.parameters(), cfg.grad_clip)
            self.state.step += 1
            if self.state.step == 1:
                dist.broadcast_module(self.model)  # data-dependent initialisations saw one rank's rows
            total += step_loss.to(torch.float64) * shard.global_size
        self.scheduler.step()
        return {"train_loss": float(total) / x_all.shape[0]}

    def _diverged(self, loss: torch.Tensor, x: torch.Tensor, shard: Shard, rng_before: torch.Tensor,
                  epoch: int) -> None:
        def rerun() -> None:
            torch.set_rng_state(rng_before)
            self._loss_sum(x, shard, self.pyro_loss)  # no DDP: the other processes take no part

        where = first_nonfinite_module(self.model, rerun)
        kept = f"last good checkpoint: epoch {self.state.epoch} in {self.run_dir / CHECKPOINT}" \
            if (self.run_dir / CHECKPOINT).exists() else "no checkpoint was written yet"
        raise TrainingDiverged(f"training loss became {float(loss.detach())} at step {self.state.step + 1} (epoch {epoch}); "
                               f"{where}; {kept}")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation metrics (nats per example, log-likelihood sign) with fixed noise."""
        x_val = self.dataset.split("val")
        self.model.eval()
        recon = kl = 0.0
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(VAL_SEED)
            for i in range(0, x_val.shape[0], self.config.val_batch_size):
                x = x_val[i:i + self.config.val_batch_size].to(self.device)
                self.validation_objective.differentiable_loss(self.model.model, self.model.guide, x)
                recon += float(self.validation_objective.components["recon"])
                kl += float(self.validation_objective.components["kl"])
            extras = self.model.validation_extras(x_val.to(self.device))
        n = x_val.shape[0]
        dim = self.dataset.spec.dim
        if self.model.has_latents:
            row = {"val_elbo": (recon - kl) / n, "val_recon": recon / n, "val_kl": kl / n,
                   "val_bpd": bits_per_dim(-(recon - kl) / n, dim)}
        else:
            row = {"val_log_likelihood": recon / n, "val_bpd": bits_per_dim(-recon / n, dim)}
        row.update({f"val_{k}": v for k, v in extras.items()})
        return row

    def objective_of(self, row: dict[str, float]) -> float:
        return row["val_elbo"] if "val_elbo" in row else row["val_log_likelihood"]
