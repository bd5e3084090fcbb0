"""CIFAR-10/100 as uint8 NCHW tensors held on the training device, from NumPy archives
(`cifar10.npz` or `cifar10-*.npz`, keys x_train, y_train, x_test, y_test) or a torchvision
folder (downloaded where there is a network)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robdrop.data.dataset import DatasetNotFound
from robdrop.data.loader import TensorLoader

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass
class ImageData:
    """A dataset held as uint8 NCHW tensors: training part, held-out validation part, test set."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_train(self) -> int:
        return len(self.train_y)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def to(self, device: torch.device | str) -> ImageData:
        """Move every tensor to `device` (the training set lives where training runs)."""
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return ImageData(**{**vars(self), **moved})

    def train_loader(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        rank: int = 0,
        world: int = 1,
    ) -> TensorLoader:
        """Shuffled, augmented minibatches of the training part, on its device (rank's part)."""
        return TensorLoader(
            self.train_x,
            self.train_y,
            batch_size,
            seed=seed,
            memory_format=memory_format,
            rank=rank,
            world=world,
        )


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _npz_files(name: str, data_dir: Path) -> list[Path]:
    """`<name>.npz` or `<name>-*.npz` (so `cifar10-*` never picks up `cifar100-*`)."""
    files = list(data_dir.glob(f"{name}.npz")) + list(data_dir.glob(f"{name}-*.npz"))
    return sorted(files, key=_natural_key)


def _load_npz(name: str, files: list[Path]) -> tuple[np.ndarray, ...]:
    """Concatenate `x_train/y_train` and `x_test/y_test` across files (train may be split)."""
    parts: dict[str, list[np.ndarray]] = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
    classes = None
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            for key in parts:
                if key in z.files:
                    parts[key].append(z[key])
            if "classes" in z.files:
                classes = [str(c) for c in z["classes"]]
    missing = [k for k, v in parts.items() if not v]
    if missing:
        names = ", ".join(f.name for f in files)
        raise DatasetNotFound(f"{name}: the archives {names} hold no {', '.join(missing)}.")
    x_train, y_train, x_test, y_test = (np.concatenate(parts[k]) for k in parts)
    return x_train, y_train, x_test, y_test, classes


def _load_torchvision(name: str, data_dir: Path, download: bool) -> tuple[np.ndarray, ...]:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    try:
        train = cls(str(data_dir), train=True, download=download)
        test = cls(str(data_dir), train=False, download=download)
    except Exception as err:  # torchvision raises RuntimeError or URLError depending on the cause
        how = "the download failed" if download else "download is off"
        raise DatasetNotFound(
            f"{name} was not found in {data_dir} (no {name}.npz / {name}-*.npz archives, no "
            f"torchvision folder) and {how} ({type(err).__name__}); pass --data-dir pointing at "
            f"either, or run where torchvision can download it."
        ) from err
    return (
        train.data,
        np.asarray(train.targets),
        test.data,
        np.asarray(test.targets),
        list(train.classes),
    )


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 NHWC images, got {x.dtype} {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()


def load_cifar(
    name: str,
    data_dir: str | Path,
    *,
    download: bool = True,
    train_size: int | None = None,
    val_size: int = 0,
) -> ImageData:
    """CIFAR-10/100 from NumPy archives in `data_dir`, else a torchvision folder (downloading).

    `train_size` keeps the first N training images; `val_size` holds out the last N images of the
    full training set (never trained on) for model selection and monitoring.
    """
    if name not in CIFAR_STATS:
        raise ValueError(f"unknown CIFAR dataset {name!r}; choose cifar10 or cifar100")
    data_dir = Path(data_dir).expanduser()
    files = _npz_files(name, data_dir) if data_dir.is_dir() else []
    if files:
        x_train, y_train, x_test, y_test, classes = _load_npz(name, files)
    else:
        x_train, y_train, x_test, y_test, classes = _load_torchvision(name, data_dir, download)
    n = len(y_train)
    n_train = n - val_size if train_size is None else train_size
    if val_size < 0 or n_train <= 0 or n_train + val_size > n:
        raise ValueError(
            f"train_size={train_size} and val_size={val_size} do not fit in {n} training images"
        )
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    classes = classes or [str(i) for i in range(num_classes)]
    mean, std = CIFAR_STATS[name]
    xt, yt = _to_nchw(x_train), torch.as_tensor(y_train, dtype=torch.int64)
    return ImageData(
        name=name,
        train_x=xt[:n_train],
        train_y=yt[:n_train],
        val_x=xt[n - val_size :],
        val_y=yt[n - val_size :],
        test_x=_to_nchw(x_test),
        test_y=torch.as_tensor(y_test, dtype=torch.int64),
        classes=classes,
        mean=mean,
        std=std,
    )
