"""Multi-process training under `torchrun` (DistributedDataParallel): who this process is, and the
few collective operations the trainer and the methods need.

Every function is a no-op in a single process, so the training code reads the same either way.
Under torchrun each rank trains on its share of every global minibatch (`--batch-size` stays the
effective batch size, so the learning-rate schedule needs no rescaling); gradients of θ are
averaged by DDP, and what the methods share themselves (APART's step-size gradients, rows of
per-example buffers) goes through `robdrop.data.sharding`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from robdrop.data.sharding import active

TIMEOUT = timedelta(hours=2)  # rank 0 evaluates alone while the others wait at a barrier


@dataclass(frozen=True)
class Process:
    """This process's place in the job: rank among `world` processes, GPU index on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes run files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def from_environment() -> Process:
    """The process torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); one process otherwise."""
    env = os.environ
    return Process(
        int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    )


def start(process: Process, device: torch.device) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPU); the device this rank trains on."""
    if not process.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", process.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
    return device


def stop() -> None:
    """Leave the process group (after the last collective)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks in place (training loss and accuracy counts)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any (so all ranks stop at the same batch)."""
    if not active():
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather(value: object) -> list[object]:
    """Every rank's `value`, in rank order (e.g. RNG states for a checkpoint)."""
    if not active():
        return [value]
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values
