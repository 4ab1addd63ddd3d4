"""Training on several processes (``torchrun``): the process group, this process's place in it, and
the few operations that let W ranks with a global batch B train as one process with batch B.

The scheme (what :class:`ganbrush_core.training.TrainingRun` and every trainer follow):

- ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
  :func:`setup` starts the process group from them (NCCL for CUDA devices, gloo for the CPU).
  Without them (or with ``WORLD_SIZE=1``) nothing is started and every function here is a no-op,
  so one process runs exactly the code it always ran.
- Every rank is seeded alike and runs the same code, so the global random states stay the same on
  all ranks. Per-sample random draws (latents, noise, augmentation) go through :func:`randn_rows`,
  :func:`rand_rows` and :func:`randint_rows`: each rank draws the whole global batch's numbers
  and keeps its own rows, so ranks never repeat each other's draws and the union of their rows is
  what one process would have drawn.
- Data: :func:`sharded_loader` shuffles exactly as a ``DataLoader(shuffle=True)`` on the same
  generator (one permutation per epoch, drawn from the generator's state at the epoch's start,
  which :class:`ganbrush_core.training.ResumableBatches` saves as the data position) and gives
  rank r rows ``r, r+W, r+2W, ...`` of every global batch (``B / W`` rows; refused when W does
  not divide B). The position counts global batches, so a run resumes under any world size.
- Gradients are averaged over ranks just before each optimiser step (:func:`average_gradients`,
  one all-reduce of the flattened gradients, as StyleGAN2-ADA does) rather than with
  ``DistributedDataParallel``: lazy regularisers that backpropagate through ``autograd.grad``,
  networks frozen for one phase and several backward passes before one step all work unchanged.
  Losses are means over the rank's rows, so the average of the ranks' gradients is the gradient of
  the global batch's mean. Running statistics (buffers) are averaged with :func:`average_`.

Tensors: batches are split along dim 0; every rank holds the same number of rows. The rows are
strided rather than contiguous so that layers which group a batch by stride, as StyleGAN's
minibatch standard deviation does (group ``k`` = rows ``k, k + N/g, ...``), see the same groups
on each rank as in one process, as long as a rank's share stays divisible by the group size.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedError(ValueError):
    """A distributed run cannot start as configured; ``str()`` is one line saying what to change."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (``size == 1``: a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    def split_batch(self, batch: int, what: str = "batch") -> int:
        """The per-rank share of a global ``batch``; refused when the ranks cannot split it evenly."""
        if batch % self.size:
            lower = max(batch // self.size, 1) * self.size
            raise DistributedError(f"the global {what} {batch} does not split evenly over {self.size} ranks; "
                                   f"use a multiple of {self.size} (e.g. {lower} or {lower + self.size})")
        return batch // self.size

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows ``rank, rank + size, ...`` of ``x``, a tensor that holds the whole
        global batch along dim 0."""
        if self.size == 1:
            return x
        self.split_batch(x.shape[0], "row count")
        return x[self.rank :: self.size].contiguous()

    def device(self, device: str | torch.device) -> torch.device:
        """The device this rank trains on: with several ranks any CUDA device means this node's
        GPU ``LOCAL_RANK`` (one process per GPU, as torchrun starts them)."""
        device = torch.device(device)
        if device.type == "cuda" and self.size > 1:
            return torch.device("cuda", self.local_rank)
        return device


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


def current() -> World:
    """The running process group's :class:`World` (a single process when none was started)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK") or 0)


def setup(device: str | torch.device = "cpu") -> World:
    """Start the process group that ``torchrun`` describes in the environment, once per process
    (later calls return the running one). ``device``: what the run trains on, choosing NCCL (CUDA)
    or gloo (anything else). Without ``WORLD_SIZE`` > 1 nothing is started."""
    if dist.is_available() and dist.is_initialized():
        return current()
    size = _env_int("WORLD_SIZE")
    if size is None or size == 1:
        return World()
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if size < 1 or rank is None or not 0 <= rank < size:
        raise DistributedError(f"WORLD_SIZE={size} but RANK={os.environ.get('RANK')!r}: start several processes "
                               "with torchrun, which sets both")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise DistributedError(f"WORLD_SIZE={size} but {name} is not set: start with torchrun "
                                   "(--standalone, or --rdzv-endpoint HOST:PORT on several machines)")
    local_rank = local_rank or 0
    cuda = torch.device(device).type == "cuda"
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(f"LOCAL_RANK {local_rank} but this machine shows {torch.cuda.device_count()} "
                                   "GPUs: start at most one process per GPU (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=size,
                            device_id=torch.device("cuda", local_rank) if cuda else None)
    return current()


def shutdown() -> None:
    """End the process group if one runs (at the end of a program; a no-op otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if current().size > 1:
        dist.barrier()


# ---------------------------------------------------------------------------------------------
# Collectives


def _collective_device() -> torch.device:
    """Where a tensor made only for a collective must live: NCCL reduces CUDA tensors only (a CPU
    tensor raises), so this rank's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def average_(tensors: Iterable[torch.Tensor]) -> None:
    """Replace each tensor, in place, by its mean over the ranks: one all-reduce per dtype and
    device of the flattened tensors. Every rank must pass the same shapes in the same order."""
    world = current()
    if world.size == 1:
        return
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for ts in groups.values():
        flat = torch.cat([t.reshape(-1) for t in ts])
        dist.all_reduce(flat)
        flat /= world.size
        for t, part in zip(ts, flat.split([t.numel() for t in ts])):
            t.copy_(part.view_as(t))


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over the ranks, before ``optimizer.step()``. Parameters
    without a gradient are left out: every rank runs the same code, so they are the same on all."""
    average_(p.grad for p in params if p.grad is not None)


def all_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over the ranks (a new tensor; ``x`` itself in one process)."""
    if current().size == 1:
        return x
    out = x.detach().clone()
    average_([out])
    return out


def mean_stats(stats: Mapping[str, float]) -> dict[str, float]:
    """Scalar statistics averaged over the ranks (the same keys on every rank). A rank with NaN
    for a key (nothing to measure in its rows) is left out of that key's mean."""
    if current().size == 1:
        return dict(stats)
    values = torch.tensor([float(v) for v in stats.values()], dtype=torch.float64, device=_collective_device())
    known = ~values.isnan()
    sums = torch.stack([torch.where(known, values, 0.0), known.double()])
    average_([sums])
    return dict(zip(stats, (sums[0] / sums[1]).tolist()))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled; a no-op in one process)."""
    if current().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ---------------------------------------------------------------------------------------------
# Per-sample random draws


def _rows_of(draw, n: int) -> torch.Tensor:
    world = current()
    return world.rows(draw(n * world.size))


def randn_rows(n: int, *shape: int, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.randn(n, *shape)`` for a rank's ``n`` rows: its rows of one draw for the global batch."""
    return _rows_of(lambda m: torch.randn(m, *shape, device=device, dtype=dtype), n)


def rand_rows(n: int, *shape: int, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.rand(n, *shape)`` for a rank's ``n`` rows (see :func:`randn_rows`)."""
    return _rows_of(lambda m: torch.rand(m, *shape, device=device, dtype=dtype), n)


def randint_rows(low: int, high: int, n: int, *shape: int,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``torch.randint(low, high, (n, *shape))`` for a rank's ``n`` rows (see :func:`randn_rows`)."""
    return _rows_of(lambda m: torch.randint(low, high, (m, *shape), device=device), n)


# ---------------------------------------------------------------------------------------------
# Data


class ShardedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """This rank's rows of every global batch of a seeded shuffle.

    The global batches are those of ``DataLoader(shuffle=True, batch_size=batch, drop_last=True,
    generator=generator)``: one permutation per epoch, drawn from ``generator`` (its state at the
    epoch's start is the epoch's seed), cut into batches of ``batch``. Rank r takes rows
    ``r, r + W, ...`` of each (:meth:`World.rows`); in one process that is the whole batch, so the
    order is exactly that of the plain shuffled loader. ``len()`` counts global batches.
    """

    def __init__(self, data: Sized, batch: int, generator: torch.Generator, world: World | None = None) -> None:
        self.world = world or current()
        self.world.split_batch(batch)
        self.batches = torch.utils.data.BatchSampler(
            torch.utils.data.RandomSampler(data, generator=generator), batch, drop_last=True)

    def __iter__(self) -> Iterator[list[int]]:
        for indices in self.batches:
            yield indices[self.world.rank :: self.world.size]

    def __len__(self) -> int:
        return len(self.batches)


def _seed_worker(rank: int, worker_id: int) -> None:
    # DataLoader seeds worker w with base_seed + w, and base_seed comes from the shared generator,
    # so worker w of every rank would draw the same numbers: mix the rank in.
    seed = (torch.initial_seed() * 1_000_003 + rank) % 2**63
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def sharded_loader(dataset: torch.utils.data.Dataset, batch: int, generator: torch.Generator,
                   world: World | None = None, **loader_kwargs: Any) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` of this rank's share of each global ``batch`` (:class:`ShardedBatchSampler`);
    in one process it yields exactly what ``DataLoader(dataset, batch, shuffle=True,
    drop_last=True, generator=generator, **loader_kwargs)`` yields."""
    world = world or current()
    sampler = ShardedBatchSampler(dataset, batch, generator, world)
    if world.size > 1 and loader_kwargs.get("num_workers", 0) > 0:
        loader_kwargs.setdefault("worker_init_fn", functools.partial(_seed_worker, world.rank))
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, generator=generator, **loader_kwargs)
