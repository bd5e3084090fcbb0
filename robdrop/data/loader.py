"""Minibatches of a uint8 tensor dataset, augmented on its device; fixed-order evaluation batches.

The order and the augmentation of epoch e depend only on (seed, e) (`epoch_generator`), so a
resumed run sees exactly the batches an uninterrupted run would. Under torchrun every rank draws
the same global minibatches and keeps its contiguous part (`rank_part`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
import torch.nn.functional as F

from robdrop.data.batch import Batch, Shard, View

# keeps the streams of (seed, epoch) and of (seed, rank) apart
SEED_STRIDE = 1_000_003


def derived_seed(seed: int, stream: int) -> int:
    """A seed of its own for stream `stream` (an epoch, a rank) of the run seeded with `seed`."""
    return seed * SEED_STRIDE + stream


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that fixes epoch `epoch`'s order and augmentation."""
    return torch.Generator().manual_seed(derived_seed(seed, epoch))


class Loader(Protocol):
    """A training loader: `len()` minibatches per pass over the data, pass e from `epoch(e)`."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[Batch]: ...


def batch_bounds(n: int, batch_size: int, *, drop_last: bool = False, world: int = 1) -> list:
    """(start, stop) of each global minibatch; with `world` ranks a last minibatch too small to
    give every rank an example joins the one before it (so every example is still seen)."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if drop_last and bounds and bounds[-1][1] - bounds[-1][0] < batch_size:
        bounds.pop()
    if world > 1 and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < world:
        bounds[-2:] = [(bounds[-2][0], bounds[-1][1])]
    if any(stop - start < world for start, stop in bounds):
        raise ValueError(f"{n} training images cannot give each of {world} processes an example")
    return bounds


def rank_part(size: int, rank: int, world: int) -> slice:
    """This rank's contiguous part of a global minibatch of `size` examples (sizes ±1)."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def pad_images(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad images on each side (the padding of the standard CIFAR random crop)."""
    return F.pad(x, (pad, pad, pad, pad))


class TensorLoader:
    """Shuffled minibatches of a uint8 tensor dataset, augmented on its device in batch.

    The order and the augmentation of epoch e depend only on (seed, e), so a resumed run sees
    exactly the batches an uninterrupted run would. Under torchrun (`world` > 1) every rank draws
    the same global minibatches and keeps its part (`rank_part`), so `batch_size` is the
    effective batch size whatever the number of processes.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        seed: int = 0,
        augment: bool = True,
        pad: int = 4,
        drop_last: bool = False,
        memory_format: torch.memory_format = torch.contiguous_format,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size, self.seed, self.augment, self.pad = batch_size, seed, augment, pad
        self.memory_format, self.rank, self.world = memory_format, rank, world
        self.bounds = batch_bounds(len(y), batch_size, drop_last=drop_last, world=world)

    def __len__(self) -> int:
        return len(self.bounds)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch (1-based), in the order fixed by (seed, epoch)."""
        gen = epoch_generator(self.seed, epoch)
        n, device = len(self.y), self.x.device
        order = torch.randperm(n, generator=gen).to(device)
        size = self.x.shape[-1]
        for start, stop in self.bounds:
            group = order[start:stop]
            part = rank_part(len(group), self.rank, self.world)
            idx = group[part]
            x = self.x[idx]
            view = None
            if self.augment:  # drawn for the whole global minibatch: the generator stays in step
                k = len(group)
                top = torch.randint(0, 2 * self.pad + 1, (k,), generator=gen).to(device)
                left = torch.randint(0, 2 * self.pad + 1, (k,), generator=gen).to(device)
                flip = (torch.rand(k, generator=gen) < 0.5).to(device)
                view = View(top[part], left[part], flip[part], size, self.pad)
                x = view.take(pad_images(x, self.pad))
            x = (x.float() / 255).contiguous(memory_format=self.memory_format)
            shard = Shard(group, part.start) if self.world > 1 else None
            yield Batch(x, self.y[idx], idx, view, shard)


def iterate_eval(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device | str
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed-order float batches in [0, 1] of a uint8 tensor set, for evaluation."""
    for i in range(0, len(y), batch_size):
        yield x[i : i + batch_size].to(device).float() / 255, y[i : i + batch_size].to(device)
