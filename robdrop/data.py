"""Datasets as uint8 tensors on the training device, batched crop/flip there, and example indices.

Every batch carries the indices of its examples and the crop/flip it received (`View`), so methods
with per-example state (APART's ω, ATTA's stored perturbations) can keep that state aligned with
the augmented image: the state lives in padded image coordinates and `View` crops it the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from robdrop.folder_data import FolderData

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DATASETS = ("cifar10", "cifar100", "imagenet")


class DatasetNotFound(FileNotFoundError):
    """A dataset could not be found or downloaded; the message says where we looked."""


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


def data_facts(data: ImageData | FolderData) -> dict:
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


@dataclass
class View:
    """The crop offsets and flips a batch received; applies the same to per-example state."""

    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor
    size: int
    pad: int

    def _grid(self) -> tuple[torch.Tensor, ...]:
        r = torch.arange(self.size, device=self.top.device)
        rows = (self.top[:, None] + r)[:, None, :, None]
        cols = self.left[:, None] + r
        cols = torch.where(self.flip[:, None], cols.flip(1), cols)[:, None, None, :]
        batch = torch.arange(len(self.top), device=self.top.device)[:, None, None, None]
        return batch, rows, cols

    def take(self, padded: torch.Tensor) -> torch.Tensor:
        """Crop-and-flip a batch of padded tensors (B, C, H+2p, W+2p) -> (B, C, H, W)."""
        b, rows, cols = self._grid()
        chan = torch.arange(padded.shape[1], device=padded.device)[None, :, None, None]
        return padded[b, chan, rows, cols]

    def put(self, padded: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Write `values` (B, C, H, W) back into a copy of `padded` through the inverse view."""
        b, rows, cols = self._grid()
        chan = torch.arange(padded.shape[1], device=padded.device)[None, :, None, None]
        out = padded.clone()
        out[b, chan, rows, cols] = values.to(out.dtype)
        return out


@dataclass
class Shard:
    """Where a rank's batch sits in the global minibatch of a multi-process (torchrun) run."""

    indices: torch.Tensor  # example indices of the whole global minibatch
    start: int  # this rank's examples are indices[start : start + len(batch)]


@dataclass
class Batch:
    """Images in [0, 1], labels, example indices into the training set, and the view applied."""

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    view: View | None = None
    shard: Shard | None = None  # set when the global minibatch is split over ranks


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
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
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
