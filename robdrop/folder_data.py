"""ImageNet-style data from an ImageFolder tree (`train/<class>/*.JPEG`, `val/<class>/*.JPEG`).

The training set is too large to live on the device, so it streams through torchvision's
DataLoader; batches still carry example indices. The test set is materialised at a fixed size
as uint8 tensors (a subset when `test_size` is given) so evaluation code is shared with CIFAR.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torchvision import datasets, transforms

from robdrop.data import IMAGENET_STATS, Batch, DatasetNotFound


class _Indexed(torch.utils.data.Dataset):
    """Wraps a dataset so each item also returns its index."""

    def __init__(self, base: torch.utils.data.Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x, y = self.base[i]
        return x, y, i


class FolderLoader:
    """Shuffled minibatches of an ImageFolder, random-resized-cropped and flipped."""

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
    ) -> None:
        tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size),
                transforms.RandomHorizontalFlip(),
                transforms.PILToTensor(),
            ]
        )
        self.dataset = _Indexed(datasets.ImageFolder(str(root), transform=tf))
        self.batch_size, self.seed, self.workers = batch_size, seed, workers
        self.device, self.memory_format = torch.device(device), memory_format

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch (1-based); order and crops depend only on (seed, epoch)."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            generator=gen,
            num_workers=min(self.workers, os.cpu_count() or 1),  # more only oversubscribes
            pin_memory=self.device.type == "cuda",
        )
        for x, y, idx in loader:
            x = x.to(self.device, non_blocking=True).float().div_(255)
            yield Batch(
                x.contiguous(memory_format=self.memory_format),
                y.to(self.device),
                idx.to(self.device),
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
    ) -> FolderLoader:
        return FolderLoader(
            self.train_root,
            batch_size,
            self.image_size,
            seed=seed,
            workers=self.workers,
            device=self.device,
            memory_format=memory_format,
        )


def load_imagefolder(
    data_dir: str | Path,
    *,
    image_size: int = 224,
    test_size: int | None = None,
    workers: int = 4,
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
    )
