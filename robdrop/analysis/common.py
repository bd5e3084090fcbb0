"""What every analysis shares: which run a name means, its data and a fixed test subset,
checkpoints read on first use, seeded randomness, and an eval mode a generator cannot leave."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from robdrop.analysis.foreign import ForeignModel, parse_foreign
from robdrop.attacks.base import eval_locked, forked_rng
from robdrop.data import Batch, ImageData
from robdrop.methods import Method, parse_method
from robdrop.models import Classifier
from robdrop.training.config import TrainConfig, make_config
from robdrop.training.factories import load_data
from robdrop.training.runs import Run, find_runs

if TYPE_CHECKING:
    from robdrop.data.folder import FolderData

# the configuration fields that decide which images a run's data holds
_DATA_FIELDS = (
    "dataset",
    "data_dir",
    "download",
    "train_size",
    "val_size",
    "image_size",
    "eval_size",
    "workers",
)
# what an analysis looks at: a run robdrop trained, or a model it did not (analysis/foreign.py)
Source = Run | ForeignModel


def resolve_run(spec: str | Path | Source, root: str | Path, preset: str | None) -> Source:
    """A run folder, the run of method `spec` trained with `preset` under `root`, or a foreign
    model (`FACTORY=WEIGHTS` or an export card, its analyses cached under `root`).

    With several such runs, the one with the preset's default ε and seed is taken.
    """
    if isinstance(spec, Run | ForeignModel):
        return spec
    foreign = parse_foreign(str(spec), root)
    if foreign is not None:
        return foreign
    if (Path(spec) / "run.json").is_file():
        return Run(spec)
    try:
        key = parse_method(str(spec)).key
    except ValueError as err:
        raise ValueError(
            f"{spec!r} is neither a run folder (no run.json) nor a method: {err}"
        ) from err
    found = [r for r in find_runs(root) if r.config.method_key == key and r.config.preset == preset]
    if not found:
        raise ValueError(
            f"no {key} run with preset {preset} under {root}; train one with `robdrop train "
            f"--method {key} --preset {preset} --out {root}` or pass a run folder"
        )
    if len(found) > 1:
        default = make_config(preset, method=key)
        wanted = (default.eps255, default.seed)
        found = [r for r in found if (r.config.eps255, r.config.seed) == wanted] or found
    if len(found) > 1:
        names = ", ".join(str(r.path) for r in found)
        raise ValueError(f"several {key} runs with preset {preset} match ({names}); pass one path")
    return found[0]


def run_data(run: Source, data_dir: str | Path | None = None) -> ImageData | FolderData:
    """The dataset `run` was trained on (from `data_dir` if given: a copy elsewhere)."""
    cfg = run.config
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data_dir=str(data_dir))
    return _load(tuple(getattr(cfg, f) for f in _DATA_FIELDS))


@lru_cache(maxsize=2)
def _load(values: tuple) -> ImageData | FolderData:
    """Loading CIFAR takes seconds; analyses of the runs of one study share it."""
    return load_data(TrainConfig(**dict(zip(_DATA_FIELDS, values, strict=True))))


def subset(
    x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (n None), or n of them drawn with `seed`, kept in their original order."""
    if n is None:
        return x, y
    if not 0 < n <= len(y):
        raise ValueError(f"n must be between 1 and {len(y)} (the images available), got {n}")
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return x[keep], y[keep]


def fixed_test_subset(
    run: Source, n: int | None, seed: int, data_dir: str | Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed test images an analysis of `run` uses (uint8, as stored)."""
    data = run_data(run, data_dir)
    return subset(data.test_x, data.test_y, n, seed)


class Checkpoint:
    """One epoch of a run, read on first use, so a fully cached analysis never loads it.

    Reading builds (randomly initialises) the model before loading its weights; that happens
    on a forked RNG, so a checkpoint read first inside a `seeded` evaluation leaves the
    evaluation's random starts the same as when it was read before.
    """

    def __init__(self, run: Source, epoch: int, device: torch.device) -> None:
        self.run, self.epoch, self.device = run, epoch, device

    @property
    def path(self) -> Path:
        return self.run.checkpoint_path(self.epoch)

    @cached_property
    def loaded(self) -> tuple[Classifier | torch.nn.Module, Method]:
        with forked_rng(self.device):
            return self.run.load(self.epoch, self.device)

    @property
    def model(self) -> Classifier | torch.nn.Module:
        return self.loaded[0]

    @property
    def method(self) -> Method:
        return self.loaded[1]


# called before each checkpoint an analysis takes, in its thread (see `between_checkpoints`)
_BETWEEN_CHECKPOINTS: list[Callable[[], None]] = []


@contextmanager
def between_checkpoints(callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` before each checkpoint of every analysis loop inside the block, in the
    loop's own thread: where a study's analysis widens into CPU slots freed while it runs (a
    thread's OpenMP threads can only be set from that thread)."""
    _BETWEEN_CHECKPOINTS.append(callback)
    try:
        yield
    finally:
        _BETWEEN_CHECKPOINTS.remove(callback)


def progress(epochs: Iterable[int], desc: str) -> Iterator[int]:
    """A loop over checkpoints, with its progress bar."""
    with tqdm(epochs, desc=desc, unit="ckpt", leave=False) as bar:
        for epoch in bar:
            for callback in _BETWEEN_CHECKPOINTS:
                callback()
            yield epoch


def own_perturbation(ckpt: Checkpoint, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f_A(θ_A, x, y): the run's own generator with its learned state, in eval mode.

    Test images are not training examples, so they get no learned per-example initialisation.
    """
    with eval_locked(ckpt.model):
        return ckpt.method.perturb(Batch.outside(x, y))
