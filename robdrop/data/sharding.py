"""How a global minibatch's per-example rows and a method's own gradients are shared between
the processes of a torchrun job. Every function is a no-op in a single process.

Rows of per-example buffers (APART's ω, ATTA's δ) written by one rank for its part of the
global minibatch are copied to all (`share_rows`), so every rank holds the whole, identical
buffer; gradients of a method's own parameters, which DDP does not own (APART's step sizes), are
averaged (`average_gradients`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist

from robdrop.data.batch import Batch


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(parameters: Iterable[torch.Tensor]) -> None:
    """Average the gradients of parameters that DDP does not own (a method's own)."""
    if not active():
        return
    world = dist.get_world_size()
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def share_rows(buffer: torch.Tensor, batch: Batch) -> None:
    """Copy the rows of a per-example buffer that each rank wrote for its part of the global
    minibatch to every rank, so the buffer stays whole and identical everywhere."""
    if not active() or batch.shard is None:
        return
    shard = batch.shard
    rows = buffer.new_zeros((len(shard.indices), *buffer.shape[1:]))
    rows[shard.start : shard.start + len(batch.idx)] = buffer[batch.idx]
    dist.all_reduce(rows)
    buffer[shard.indices] = rows
