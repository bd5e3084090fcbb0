"""What every dataset source shares: the names robdrop knows, the error for a missing dataset,
the facts a run records about its data, and the interface the trainer and analyses use."""

from __future__ import annotations

from typing import Protocol

import torch

from robdrop.data.loader import Loader

DATASETS = ("cifar10", "cifar100", "imagenet")


class DatasetNotFound(FileNotFoundError):
    """A dataset could not be found or downloaded; the message says where we looked."""


class Dataset(Protocol):
    """A training set (streamed or on the device), a held-out split and a test set as uint8."""

    name: str
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_train(self) -> int: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def image_shape(self) -> tuple[int, int, int]: ...

    @property
    def val_x(self) -> torch.Tensor: ...

    @property
    def val_y(self) -> torch.Tensor: ...

    @property
    def test_x(self) -> torch.Tensor: ...

    @property
    def test_y(self) -> torch.Tensor: ...

    def to(self, device: torch.device | str) -> Dataset: ...

    def train_loader(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        rank: int = 0,
        world: int = 1,
    ) -> Loader: ...


def data_facts(data: Dataset) -> dict:
    """What a run records about its data, so a checkpoint can be rebuilt without loading it."""
    return {
        "dataset": data.name,
        "num_train": data.num_train,
        "num_val": len(data.val_y),
        "num_test": len(data.test_y),
        "image_shape": list(data.image_shape),
        "num_classes": data.num_classes,
        "mean": list(data.mean),
        "std": list(data.std),
    }
