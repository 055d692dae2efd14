"""Data-parallel training on ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc-per-node P -m inference.train MODEL ...`` starts P processes (ranks) with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment; :func:`distributed_session` sees
them and joins the process group (NCCL on CUDA, gloo on CPU). Without them training is the plain
single-process loop, unchanged. What makes P processes train exactly like one:

- **Global batch.** ``--batch-size B`` is the global batch. Every rank draws the same per-epoch
  permutation and takes its slice of each global batch (:meth:`DistributedContext.shard`), so one
  optimisation step sees the same B examples whatever P is. B must be divisible by P; the last,
  shorter batch of an epoch is split as evenly as it goes.
- **Loss scaling.** Rank r minimises ``P * sum_{n in r} loss_n / B_step`` (B_step the examples of
  the whole step); DDP averages gradients over the P ranks, so every rank ends up with the gradient
  of ``sum_n loss_n / B_step``, the single-process mean over the global batch.
- **Per-example noise.** :class:`GlobalNoise` (a Pyro messenger) draws the reparameterisation noise
  of each latent site for the *whole* global batch from a generator seeded identically on every
  rank by (seed, step, site name), and each rank keeps its own rows: example n gets the same
  eps_n with any P. The GAN's z and gradient-penalty draws use :func:`global_noise` the same way.
- **Rank 0 writes.** Only rank 0 writes ``config.json``, ``metrics.csv``, checkpoints, figures,
  progress bars and the final evaluation; validation runs on rank 0 and its row is broadcast, so
  every rank takes the same early-stopping decision.

Other randomness (dropout masks) comes from each rank's global torch generator, re-seeded from
(seed, epoch, rank) at the start of every epoch, so a resumed run repeats it too; it does depend on
P, so exact agreement between P processes and one needs models without dropout in training.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as torch_dist
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import nn

from core.device import resolve_device
from core.errors import DGMError
from core.seeding import stable_seed
from models.protocols import DATA_PLATE

T = TypeVar("T")


def torchrun_environment() -> bool:
    """True when the process was started by ``torchrun`` (or anything that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@dataclass(frozen=True)
class Shard:
    """This rank's part of one global batch: ``index`` (its rows), their ``offset`` in the global
    batch and the global batch's size ``global_size``."""

    index: torch.Tensor
    offset: int
    global_size: int


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size``; ``enabled`` only under torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """For ``config.json``: the world size and backend of a torchrun launch (nothing otherwise)."""
        if not self.enabled:
            return {}
        return {"distributed": {"world_size": self.world_size, "backend": torch_dist.get_backend()}}

    def summary(self) -> str:
        """`` x P processes`` for the start-up line (empty without torchrun)."""
        return f" x {self.world_size} processes ({torch_dist.get_backend()})" if self.enabled else ""

    # ---- batches ------------------------------------------------------------------------------
    def check_batch_size(self, batch_size: int) -> None:
        """The global batch must split evenly over the processes."""
        if self.enabled and batch_size % self.world_size:
            raise DGMError(f"--batch-size {batch_size} is the global batch and must be divisible by the "
                           f"{self.world_size} processes; use a multiple of {self.world_size}")

    def shard(self, index: torch.Tensor) -> Shard:
        """Rank r's rows of the global batch ``index``: chunk r of P near-equal chunks (sizes differ by
        at most one; only an epoch's last, shorter batch can be uneven)."""
        if not self.enabled:
            return Shard(index, 0, index.shape[0])
        sizes = [len(c) for c in torch.tensor_split(torch.arange(index.shape[0]), self.world_size)]
        offset = sum(sizes[:self.rank])
        return Shard(index[offset:offset + sizes[self.rank]], offset, index.shape[0])

    # ---- collectives --------------------------------------------------------------------------
    def all_reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of ``value`` over the ranks (``value`` itself without torchrun); not differentiable."""
        if not self.enabled:
            return value
        total = value.detach().clone()
        torch_dist.all_reduce(total, op=torch_dist.ReduceOp.SUM)
        return total

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def broadcast(self, value: T) -> T:
        """Rank 0's picklable ``value``, on every rank."""
        if not self.enabled:
            return value
        box = [value]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give every rank its result; a :class:`DGMError` it raises is raised
        on every rank (so all processes stop with the same one-line message instead of hanging)."""
        if not self.enabled:
            return fn()
        outcome: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                outcome = (True, fn())
            except DGMError as error:
                outcome = (False, str(error))
        ok, value = self.broadcast(outcome)
        if not ok:
            raise DGMError(value)
        return value

    def reseed(self, seed: int, epoch: int) -> None:
        """Seed the global torch generator from (seed, epoch, rank) at an epoch's start (under torchrun
        only): draws outside :class:`GlobalNoise` (dropout) then differ between ranks and repeat on resume."""
        if self.enabled:
            torch.manual_seed(stable_seed("epoch", seed, epoch, self.rank))

    # ---- the model ----------------------------------------------------------------------------
    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank. Called once after the first step, because a
        data-dependent initialisation (Glow's actnorm) sees only its own rank's rows; afterwards the
        all-reduced gradients keep the ranks identical."""
        if not self.enabled:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                torch_dist.broadcast(tensor.data, src=0)

    def wrap(self, module: nn.Module, device: torch.device, static_graph: bool = False) -> nn.Module:
        """``module`` in DistributedDataParallel (its gradients all-reduced in backward); itself without torchrun.

        ``static_graph``: every step uses the same parameters (an SVI loss); DDP then also copes with
        parameters the loss never uses, found in the first step, without searching the graph each step.
        """
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, static_graph=static_graph)


SINGLE_PROCESS = DistributedContext()


def resolve_distributed_device(name: str, local_rank: int) -> torch.device:
    """``--device`` under torchrun: ``auto`` and ``cuda`` give cuda:LOCAL_RANK (auto: when CUDA is there)."""
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise DGMError(f"LOCAL_RANK {local_rank} but torch sees {torch.cuda.device_count()} GPU(s): start at most "
                       "one process per GPU (torchrun --nproc-per-node)")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


@contextmanager
def distributed_session(device_name: str) -> Iterator[tuple[DistributedContext, torch.device]]:
    """The process group for a torchrun launch (left afterwards), or the single-process context.

    Yields (context, device): NCCL and cuda:LOCAL_RANK on GPUs, gloo on CPU.
    """
    if not torchrun_environment():
        yield SINGLE_PROCESS, resolve_device(device_name)
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = resolve_distributed_device(device_name, local_rank)
    started = not torch_dist.is_initialized()
    if started:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        # validation and the final evaluation run on rank 0 while the others wait
        torch_dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(hours=1), **kwargs)
    try:
        yield DistributedContext(rank, world, local_rank, True), device
    finally:
        if started and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


# ---- noise that does not depend on the number of processes ----------------------------------------
def global_noise(kind: str, shape: tuple[int, ...], dim: int, shard: Shard, key: tuple[Any, ...],
                 device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rows ``shard.offset ..`` (along ``dim``) of standard noise drawn for the whole global batch.

    ``shape`` is the local shape; along ``dim`` the global draw has ``shard.global_size`` rows. The
    generator is seeded from ``key`` alone, so every rank draws the same global tensor. ``kind``:
    "normal" (N(0, 1)) or "uniform" (U[0, 1)).
    """
    dim = dim % len(shape)
    if shape[dim] != shard.index.shape[0]:
        raise DGMError(f"noise of shape {shape} has {shape[dim]} examples along the data dimension, "
                       f"but this process holds {shard.index.shape[0]}")
    full = list(shape)
    full[dim] = shard.global_size
    generator = torch.Generator(device=device).manual_seed(stable_seed(*key))
    draw = torch.randn if kind == "normal" else torch.rand
    eps = draw(full, generator=generator, device=device, dtype=dtype)
    return eps.narrow(dim, shard.offset, shape[dim])


class GlobalNoise(Messenger):
    """Reparameterised draws of every unobserved sample site from :func:`global_noise`.

    For a site inside ``pyro.plate("data")`` with distribution q, the value is built from standard
    noise of the whole global batch (this rank's rows) seeded by (seed, step, site, visit):

        Normal / Independent(Normal)          z = loc + scale * eps,   eps ~ N(0, I)
        MultivariateNormal                    z = loc + L eps   (L the Cholesky factor of the covariance)
        Uniform / Independent(Uniform)        u = low + (high - low) * v,   v ~ U[0, 1)
        TransformedDistribution               z = T_K(...T_1(z_0)),  z_0 from its base as above

    (the same formulas as torch's ``rsample``, so gradients are unchanged). Any other site, or a
    latent site outside the data plate, is refused with a one-line error.
    """

    def __init__(self, shard: Shard, key: tuple[Any, ...]):
        super().__init__()
        self.shard = shard
        self.key = key
        self.visits: dict[str, int] = {}

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["is_observed"] or msg["value"] is not None or msg["done"] or site_is_subsample(msg):
            return  # observed, or already set (replayed from the guide's trace)
        name = msg["name"]
        frames = [f for f in msg["cond_indep_stack"] if f.name == DATA_PLATE]
        if not frames:
            raise DGMError(f"sample site {name!r} is outside pyro.plate({DATA_PLATE!r}): distributed training draws "
                           "per-example noise and needs every latent site in the data plate")
        visit = self.visits.get(name, 0)
        self.visits[name] = visit + 1
        fn = msg["fn"]
        data_dim = len(fn.batch_shape) + frames[0].dim  # counted from the left, the same in every base
        leaves = iter(range(1_000))

        def noise(kind: str, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
            return global_noise(kind, tuple(shape), data_dim, self.shard, (*self.key, name, visit, next(leaves)),
                                like.device, like.dtype)

        msg["value"] = reparameterized_draw(fn, noise, name)
        msg["done"] = True


def reparameterized_draw(fn: Any, noise: Callable[[str, torch.Size, torch.Tensor], torch.Tensor],
                         name: str) -> torch.Tensor:
    """A draw of ``fn`` as a differentiable function of standard noise from ``noise(kind, shape, like)``."""
    while isinstance(fn, torch.distributions.Independent):
        fn = fn.base_dist
    if isinstance(fn, torch.distributions.Normal):
        shape = fn.batch_shape
        return fn.loc + fn.scale * noise("normal", shape, fn.loc)
    if isinstance(fn, torch.distributions.MultivariateNormal):
        eps = noise("normal", fn.batch_shape + fn.event_shape, fn.loc)
        return fn.loc + (fn.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    if isinstance(fn, torch.distributions.Uniform):
        shape = fn.batch_shape
        return fn.low + (fn.high - fn.low) * noise("uniform", shape, fn.low)
    if isinstance(fn, torch.distributions.TransformedDistribution):
        value = reparameterized_draw(fn.base_dist, noise, name)
        for transform in fn.transforms:
            value = transform(value)
        return value
    raise DGMError(f"sample site {name!r} has a {type(fn).__name__} distribution; distributed training supports "
                   "latent sites that are Normal, MultivariateNormal, Uniform or a TransformedDistribution of them")


class PyroLoss(nn.Module):
    """``forward(x)`` = ``objective.differentiable_loss(model.model, model.guide, x)`` (summed over x).

    Pyro's model and guide are not ``forward`` calls; wrapping this module in DDP makes the loss a
    ``forward``, so DDP's gradient hooks on the model's parameters fire in its backward.
    """

    def __init__(self, model: nn.Module, objective: Any):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.objective.differentiable_loss(self.model.model, self.model.guide, x)
