"""Shared fixtures: the real CIFAR-10 archives (a few hundred images) and tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from robdrop.data import ImageData, load_cifar
from robdrop.models import build_model

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ROBDROP_DATA_DIR", REPO.parent / "shared" / "data"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not list(DATA_DIR.glob("cifar10-*.npz")):
        pytest.fail(
            f"the real CIFAR-10 archives are needed: set ROBDROP_DATA_DIR (looked in {DATA_DIR})"
        )
    return DATA_DIR


@pytest.fixture(scope="session")
def cifar(data_dir: Path) -> ImageData:
    """256 training images, 64 held out, the full test set (uint8, CPU)."""
    return load_cifar("cifar10", data_dir, download=False, train_size=256, val_size=64)


@pytest.fixture
def tiny_model(cifar: ImageData) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("prn18", 10, cifar.mean, cifar.std, width=4)


@pytest.fixture(scope="session")
def test_batch(cifar: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
    """32 real test images in [0, 1] and their labels."""
    return cifar.test_x[:32].float() / 255, cifar.test_y[:32]


def tiny_train_args(data_dir: Path, out: Path, method: str, *extra: str) -> list[str]:
    """CLI arguments for a seconds-long real training run."""
    return [
        "train", "--method", method, "--preset", "mini", "--data-dir", str(data_dir),
        "--train-size", "256", "--val-size", "64", "--width", "4", "--epochs", "1",
        "--eval-size", "64", "--eval-attack", "pgd2", "--batch-size", "64",
        "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip
