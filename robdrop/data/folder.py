"""ImageNet-style data from an ImageFolder tree (`train/<class>/*.JPEG`, `val/<class>/*.JPEG`).

The training set is too large to live on the device, so it streams through torchvision's
DataLoader; batches still carry example indices. The test set is materialised at a fixed size
as uint8 tensors (a subset when `test_size` is given) so evaluation code is shared with CIFAR.
Training may go through resize phases (Wong et al. 2020, Table 5 of the paper): e.g. epochs 1–6 on
images resized to 160 pixels and cropped to 128, 7–12 on 352 → 224, 13–15 on full images → 288.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torchvision import datasets, transforms

from robdrop.data.batch import Batch, Shard
from robdrop.data.dataset import DatasetNotFound
from robdrop.data.loader import batch_bounds, epoch_generator, rank_part

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class _Indexed(torch.utils.data.Dataset):
    """Wraps a dataset so each item also returns its index."""

    def __init__(self, base: torch.utils.data.Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x, y = self.base[i]
        return x, y, i


@dataclass(frozen=True)
class Phase:
    """From training epoch `epoch` on: images resized to `resize` pixels on their short side
    (None: as stored), then random-resized-cropped to `crop` (Wong et al.'s ImageNet phases)."""

    epoch: int
    resize: int | None
    crop: int


def phase_of(phases: tuple[Phase, ...], epoch: int, image_size: int) -> Phase:
    """The phase training epoch `epoch` is in (without phases: full images, `image_size` crops)."""
    current = Phase(1, None, image_size)
    for phase in phases:
        if phase.epoch <= epoch:
            current = phase
    return current


class _RankBatches(torch.utils.data.Sampler):
    """This rank's part of every global minibatch of an epoch's seeded permutation."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator, rank: int, world: int):
        order = torch.randperm(n, generator=gen)
        self.groups = [order[a:b] for a, b in batch_bounds(n, batch_size, world=world)]
        self.parts = [rank_part(len(g), rank, world) for g in self.groups]

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self) -> Iterator[list[int]]:
        for group, part in zip(self.groups, self.parts, strict=True):
            yield group[part].tolist()


class FolderLoader:
    """Shuffled minibatches of an ImageFolder, random-resized-cropped and flipped, phase by phase.

    Under torchrun every rank draws the same global minibatches and loads only its part.
    """

    def __init__(
        self,
        root: Path,
        batch_size: int,
        image_size: int,
        *,
        seed: int,
        workers: int,
        device: torch.device | str,
        memory_format: torch.memory_format = torch.contiguous_format,
        phases: tuple[Phase, ...] = (),
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.dataset = _Indexed(datasets.ImageFolder(str(root)))
        self.batch_size, self.seed, self.workers = batch_size, seed, workers
        self.image_size, self.phases, self.rank, self.world = image_size, phases, rank, world
        self.device, self.memory_format = torch.device(device), memory_format
        self.bounds = batch_bounds(len(self.dataset), batch_size, world=world)

    def __len__(self) -> int:
        return len(self.bounds)

    def transform(self, epoch: int) -> transforms.Compose:
        """The augmentation of training epoch `epoch` (its phase's resize and crop)."""
        phase = phase_of(self.phases, epoch, self.image_size)
        resize = [transforms.Resize(phase.resize)] if phase.resize else []
        return transforms.Compose(
            [
                *resize,
                transforms.RandomResizedCrop(phase.crop),
                transforms.RandomHorizontalFlip(),
                transforms.PILToTensor(),
            ]
        )

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch (1-based); order and crops depend only on (seed, epoch)."""
        gen = epoch_generator(self.seed, epoch)
        sampler = _RankBatches(len(self.dataset), self.batch_size, gen, self.rank, self.world)
        self.dataset.base.transform = self.transform(epoch)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=min(self.workers, os.cpu_count() or 1),  # more only oversubscribes
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(gen.initial_seed() + self.rank + 1),
        )
        for (x, y, idx), group, part in zip(loader, sampler.groups, sampler.parts, strict=True):
            x = x.to(self.device, non_blocking=True).float().div_(255)
            shard = Shard(group.to(self.device), part.start) if self.world > 1 else None
            yield Batch(
                x.contiguous(memory_format=self.memory_format),
                y.to(self.device),
                idx.to(self.device),
                shard=shard,
            )


@dataclass
class FolderData:
    """An ImageFolder dataset: a streamed training set and a materialised test set."""

    name: str
    train_root: Path
    num_train: int
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    image_size: int
    workers: int = 4
    phases: tuple[Phase, ...] = ()
    device: torch.device | str = "cpu"
    mean: tuple[float, ...] = IMAGENET_STATS[0]
    std: tuple[float, ...] = IMAGENET_STATS[1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def val_x(self) -> torch.Tensor:
        return self.test_x[:0]

    @property
    def val_y(self) -> torch.Tensor:
        return self.test_y[:0]

    def to(self, device: torch.device | str) -> FolderData:
        """Batches and the test set go to `device`; the training images stay on disk."""
        return replace(
            self, device=device, test_x=self.test_x.to(device), test_y=self.test_y.to(device)
        )

    def train_loader(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        rank: int = 0,
        world: int = 1,
    ) -> FolderLoader:
        """This rank's training minibatches, augmented phase by phase."""
        return FolderLoader(
            self.train_root,
            batch_size,
            self.image_size,
            seed=seed,
            workers=self.workers,
            device=self.device,
            memory_format=memory_format,
            phases=self.phases,
            rank=rank,
            world=world,
        )


def load_imagefolder(
    data_dir: str | Path,
    *,
    image_size: int = 224,
    test_size: int | None = None,
    workers: int = 4,
    phases: tuple[Phase, ...] = (),
) -> FolderData:
    """ImageNet from `data_dir/train` and `data_dir/val` (torchvision ImageFolder layout)."""
    root = Path(data_dir).expanduser()
    train_root, val_root = root / "train", root / "val"
    if not (train_root.is_dir() and val_root.is_dir()):
        raise DatasetNotFound(
            f"imagenet was not found: expected ImageFolder trees {train_root} and {val_root} "
            f"(one sub-folder per class); pass --data-dir pointing at their parent."
        )
    train = datasets.ImageFolder(str(train_root))
    tf = transforms.Compose(
        [
            transforms.Resize(round(image_size * 256 / 224)),
            transforms.CenterCrop(image_size),
            transforms.PILToTensor(),
        ]
    )
    val = datasets.ImageFolder(str(val_root), transform=tf)
    if val.classes != train.classes:
        raise ValueError(f"{val_root} and {train_root} have different class folders")
    n = len(val) if test_size is None else min(test_size, len(val))
    # a fixed, seeded subset so every evaluation sees the same images
    pick = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:n].sort().values
    xs, ys = zip(*(val[int(i)] for i in pick), strict=True) if n else ((), ())
    test_x = torch.stack(xs) if n else torch.empty(0, 3, image_size, image_size, dtype=torch.uint8)
    return FolderData(
        name="imagenet",
        train_root=train_root,
        num_train=len(train),
        test_x=test_x,
        test_y=torch.tensor(ys, dtype=torch.int64),
        classes=list(train.classes),
        image_size=image_size,
        workers=workers,
        phases=phases,
    )
