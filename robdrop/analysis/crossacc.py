"""Acc(θ_A, f_B(θ_C^(i))): a fixed model under perturbations made against another run's
checkpoints (Figure 1b), with Acc(θ_A, f_Random) on the same images as the reference.

f_B is a registry attack or "own" (C's own generator with its learned state). Both models are
in eval mode; the uniform noise of f_Random is drawn with the same seed for every epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from robdrop.analysis.cache import cached
from robdrop.analysis.common import (
    Checkpoint,
    Source,
    fixed_test_subset,
    own_perturbation,
    progress,
)
from robdrop.analysis.evaluate import Epochs, resolve_epochs
from robdrop.attacks import Attack, make_attack
from robdrop.attacks.base import seeded
from robdrop.attacks.evaluate import losses_and_accuracies
from robdrop.training.factories import resolve_device

OWN = "own"
Generator = Callable[[Checkpoint, torch.Tensor, torch.Tensor], torch.Tensor]


def parse_model_spec(spec: str) -> tuple[str, str]:
    """'pgd10@30' -> ('pgd10', '30'); without '@EPOCH' the last epoch."""
    run, sep, epoch = spec.rpartition("@")
    return (run, epoch) if sep and run and epoch else (spec, "last")


def _attack_on(attack: Attack, ckpt: Checkpoint, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A registry attack as a generator of perturbations against a checkpoint."""
    return attack(ckpt.model, x, y)


def generator(spec: str, eps255: float) -> tuple[Generator, str]:
    """f_B for a spec ("own" or an attack at ε in /255) and what names it in the cache key."""
    if spec.strip().lower() == OWN:
        return own_perturbation, OWN
    attack = make_attack(spec, eps255 / 255)
    return partial(_attack_on, attack), attack.describe()


def _accuracy(
    model: torch.nn.Module,
    against: Checkpoint,
    generate: Generator,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
) -> float:
    """Accuracy of `model` on x + generate(against, x, y), randomness fixed by `seed`."""
    generators = {"B": lambda xb, yb: generate(against, xb, yb)}
    batch_size, device = against.run.config.eval_batch_size, against.device
    with seeded(seed, device):
        results = losses_and_accuracies(
            model, generators, x, y, batch_size=batch_size, device=device
        )
    return results["B"][1]


def _row(
    target: Checkpoint,
    source: Checkpoint,
    generate: Generator,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
) -> pd.DataFrame:
    """One row: Acc(θ_A, f_B(θ_C^(i)))."""
    accuracy = _accuracy(target.model, source, generate, x, y, seed)
    return pd.DataFrame([{"epoch": source.epoch, "accuracy": accuracy}])


def _random_row(
    target: Checkpoint, random: Generator, x: torch.Tensor, y: torch.Tensor, seed: int
) -> pd.DataFrame:
    """Acc(θ_A, f_Random): depends on model A only, so it is computed once for every row."""
    return pd.DataFrame([{"random_accuracy": _accuracy(target.model, target, random, x, y, seed)}])


def cross_accuracy(
    model_run: Source,
    model_epoch: int | str,
    *,
    source_run: Source,
    perturb: str = "fgsm",
    epochs: Epochs = "all",
    n: int | None = 1000,
    seed: int = 0,
    eps255: float | None = None,
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Per epoch i of `source_run`: accuracy of model_run@model_epoch on x + f_B(θ_C^(i), x, y).

    `perturb` is an attack spec or "own"; `eps255` (/255) defaults to the source run's ε. Rows are
    cached in the source run's folder, keyed by both checkpoints; the random reference, which
    depends on θ_A only, once in the model run's folder.
    """
    if model_run.config.dataset != source_run.config.dataset:
        raise ValueError(
            f"{model_run.name} was trained on {model_run.config.dataset} but {source_run.name} "
            f"on {source_run.config.dataset}"
        )
    device = resolve_device(device)
    eps255 = source_run.config.eps255 if eps255 is None else eps255
    (target_epoch,) = resolve_epochs(
        model_run, model_epoch, seed=seed, device=device, data_dir=data_dir
    )
    target = Checkpoint(model_run, target_epoch, device)
    generate, name = generator(perturb, eps255)
    random, random_name = generator("random", eps255)
    x, y = fixed_test_subset(model_run, n, seed, data_dir)
    chosen = resolve_epochs(source_run, epochs, seed=seed, device=device, data_dir=data_dir)
    model_key = [model_run.path.resolve().as_posix(), target_epoch]
    random_params = {"model": model_key, "random": random_name, "n": n, "seed": seed}
    compute_random = partial(_random_row, target, random, x, y, seed)
    random_table = cached(model_run, "random", random_params, [target.path], compute_random)
    rows = []
    for epoch in progress(chosen, f"crossacc {source_run.name}"):
        source = Checkpoint(source_run, epoch, device)
        params = {"epoch": epoch, "model": model_key, "perturb": name, "n": n, "seed": seed}
        compute = partial(_row, target, source, generate, x, y, seed)
        rows.append(cached(source_run, "crossacc", params, [source.path, target.path], compute))
    table = pd.concat(rows, ignore_index=True)
    return table.assign(
        random_accuracy=random_table["random_accuracy"].item(),
        model=f"{model_run.name}@{target_epoch}",
        source=source_run.name,
        perturb=perturb,
        n=len(y),
        seed=seed,
    )
