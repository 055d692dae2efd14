"""The SVI trainer: the training loop of every model trained through a Pyro loss (VAEs, flows, ARMs, PPCA:
any model/guide pair), registered as ``svi``.

The objective is the one the story asks for (``models.protocols.ObjectiveRequest``, looked up in
``inference.objectives.registry``: the ELBO with analytic KL by default, IWAE on request; exact
-log p(x) for a story without latents). Each step minimises
``objective.differentiable_loss(model.model, model.guide, x) / B`` with a torch
optimiser (the same gradient as ``pyro.infer.SVI.step``; a torch optimiser keeps its state a plain
``state_dict`` and gives us LR schedules). Per epoch: validation with a fixed seed, a row of
``metrics.csv``, ``best.pt`` when the validation objective improves, ``checkpoint.pt`` always,
figures. A story that fits in closed form (``models.protocols.ClosedFormFit``: PPCA with ``--fit
closed_form``) takes no gradient steps: each epoch sets its parameters to the maximiser of the training
objective on the epoch's training data, and the rest (validation, files) is as above. ``--resume``
restores weights, optimiser, scheduler and every RNG state, so a resumed run
reproduces an uninterrupted one exactly.

Under torchrun the loss runs in DistributedDataParallel with this process's share of each global
batch and noise drawn for the global batch (``inference.training.distributed``), so P processes take the
steps one process would; ``--precision`` runs the networks under autocast (``inference.training.precision``).
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import pyro
from pyro.infer.util import is_validation_enabled
import torch

from core.errors import TrainingDiverged
from core.progress import progress_bar
from core.run_dir import CHECKPOINT, METRICS, MetricsLog
from core.units import bits_per_dim
from data.dataset import Dataset
from inference.objectives.registry import kl_warmup_weight, objective_for, request_of, validation_objective_for
from inference.training.distributed import SINGLE_PROCESS, DistributedContext, GlobalNoise, PyroLoss, Shard
from inference.training.epoch_loop import VAL_SEED, EpochLoop, TrainState
from inference.training.figures import TrainingFigures
from inference.training.judge import Judge
from inference.training.optimizers import make_adam, make_scheduler, parameter_groups
from inference.training.precision import Precision
from inference.training.config import TrainConfig
from inference.training.registry import register_trainer
from models.protocols import ClosedFormFit, ValidationStatistics

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


class SVITrainer(EpochLoop):
    """Train a Pyro model/guide pair by stochastic variational inference (exact maximum likelihood
    for a story without latents), writing into ``run_dir``.

    ``objective``: the loss (default: the one the story asks for, ``objective_for(model)``); ``judge``:
    the evaluation services of the final test evaluation (``inference.training.judge``)."""

    def __init__(self, model: Any, config: TrainConfig, dataset: Dataset, run_dir: Path, model_name: str,
                 device: torch.device, dist: DistributedContext = SINGLE_PROCESS, judge: Judge | None = None,
                 objective: Any | None = None):
        dist.check_batch_size(config.batch_size)
        self.dist = dist
        self.judge = judge
        self.precision = Precision(config.precision, device)
        self.model = model.to(device)
        self.request = request_of(model)
        self.objective = objective if objective is not None else objective_for(model)
        self.validation_objective = validation_objective_for(model)
        self.config = config
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.model_name = model_name
        self.device = device
        self.optimizer = make_adam(parameter_groups(self.model, config.lr), config)  # a VAE flow prior learns slower
        self.scheduler = make_scheduler(self.optimizer, config)
        self.metrics = MetricsLog(self.run_dir / METRICS)
        self.state = TrainState()
        #: the summed loss as a module's forward; in DistributedDataParallel under torchrun
        self.pyro_loss = PyroLoss(self.model, self.objective)
        self.loss_module = dist.wrap(self.pyro_loss, device, static_graph=True)
        self.figures = TrainingFigures(self.model, dataset.spec, self.run_dir, config, model_name)
        self._validated_steps = 0

    @classmethod
    def check_options(cls, config: TrainConfig, model: Any) -> None:
        """Refuse a story the SVI trainer cannot train (its objective request names no objective)."""
        objective_for(model)

    @property
    def closed_form(self) -> bool:
        """The story fits in closed form (``models.protocols.ClosedFormFit``): one fit an epoch, no SVI steps."""
        return isinstance(self.model, ClosedFormFit) and bool(self.model.fits_in_closed_form)

    def describe(self) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        how = ", closed-form maximum-likelihood fit" if self.closed_form else ""
        return f"{self.dataset.spec.dim} dims, {n_params:,} parameters{how}"

    def final_evaluation(self, best: Any) -> None:
        """The test ELBO with one sample (the exact log-likelihood for a story without latents)."""
        if self.judge is not None:
            estimators = ["elbo"] if self.model.has_latents else ["exact"]
            self.judge.evaluate_likelihood(best, estimators, [1], self.device)

    # ---- checkpoints -------------------------------------------------------------------------
    def restorable(self) -> dict[str, Any]:
        return {"optimizer_state": self.optimizer, "scheduler_state": self.scheduler}

    # ---- one epoch ---------------------------------------------------------------------------
    def _loss_sum(self, x: torch.Tensor, shard: Shard, module: torch.nn.Module | None = None) -> torch.Tensor:
        """Summed loss of this process's examples x; under torchrun with noise drawn for the global batch."""
        noise = GlobalNoise(shard, ("svi", self.config.seed, self.state.step)) if self.dist.enabled else nullcontext()
        with noise, self.precision.networks(self.model):
            return (module or self.loss_module)(x)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the shuffled training data: ``train_loss``, the mean loss per example (nats)."""
        cfg = self.config
        x_all, batches = self.training_batches(epoch)
        if self.closed_form:  # the whole epoch's training data at once (every process computes the same fit)
            self.model.train()
            objective = self.model.fit_closed_form(x_all)
            self.state.step += 1
            return {"train_loss": -objective}
        dist = self.dist
        dist.reseed(cfg.seed, epoch)
        self.model.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)  # float64: 50,000 terms of ~100 nats
        bar = progress_bar(batches, desc=f"epoch {epoch}/{cfg.epochs}",
                           enabled=dist.is_main and cfg.progress == "epochs" and self.verbose)
        warmup = hasattr(self.objective, "kl_weight") and self.request.kl_warmup_epochs > 0
        validate = self._validated_steps == 0 and is_validation_enabled()
        # Pyro's and torch's argument validation check the program on this process's first step; later steps
        # run the same program on data of the same kind, and a non-finite loss is caught below either way
        with pyro.validation_enabled(False):
            for i, index in enumerate(bar):
                shard = dist.shard(index)
                x = x_all[shard.index.to(self.device)]
                if warmup:  # the ELBO's beta, warmed up over fractional epochs
                    self.objective.kl_weight = kl_warmup_weight(self.request, epoch - 1 + i / len(batches))
                rng_before = torch.get_rng_state()
                with pyro.validation_enabled(True) if validate else nullcontext():
                    loss_sum = self._loss_sum(x, shard)
                validate = False
                self._validated_steps += 1
                # the global batch's summed loss (every rank's sum under torchrun): the epoch's total, and the test
                global_sum = dist.all_reduce_sum(loss_sum.detach())
                if not torch.isfinite(global_sum):
                    self._diverged(global_sum / shard.global_size, x, shard, rng_before, epoch)
                self.optimizer.zero_grad(set_to_none=True)
                # P * (this process's sum) / B_step: DDP's average over P processes gives the global mean's gradient
                self.precision.backward(loss_sum * (dist.world_size / shard.global_size))
                self.precision.step(self.optimizer, self.model.parameters(), cfg.grad_clip)
                self.state.step += 1
                if self.state.step == 1:
                    dist.broadcast_module(self.model)  # data-dependent initialisations saw one rank's rows
                total += global_sum
        self.scheduler.step()
        return {"train_loss": float(total) / sum(b.shape[0] for b in batches)}

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
            extras = self.model.validation_extras(x_val.to(self.device)) \
                if isinstance(self.model, ValidationStatistics) else {}
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


register_trainer("svi", SVITrainer)
