"""Accuracy of a run's checkpoints under attacks, and which checkpoints an analysis looks at.

Every attack runs on the model in eval mode and in fp32. "best" is chosen on the run's held-out
validation split (the last `val_size` training images, never trained on), never on the test set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Literal

import pandas as pd
import torch

from robdrop.analysis.cache import cached, store
from robdrop.analysis.common import Checkpoint, Source, progress, run_data, subset
from robdrop.attacks import PGD, Attack, make_attack
from robdrop.attacks.base import model_mode, seeded
from robdrop.attacks.evaluate import accuracy_under, losses_along
from robdrop.training.best import best_epoch
from robdrop.training.factories import resolve_device

BEST_BY = "pgd20"  # the attack whose validation accuracy picks the best epoch
# a spec ending so judges the model in train mode (BatchNorm on batch statistics): clean@train
TRAIN_MODE = "@train"

Epochs = str | int | Sequence[int]
# the held-out part of the training set, or the test set
Split = Literal["val", "test"]
# Shorter PGDs a longer PGD evaluation scores on its way and caches as their own results (its
# first k iterates are PGD-k's): the strength gap's PGD-10 (Figure 3a) within the curves' PGD-20
SHARED_STOPS = (10,)


def accuracy_params(split: Split, epoch: int, description: str, n: int | None, seed: int) -> dict:
    """What names one accuracy result in the cache (`description`: the attack's `describe()`)."""
    return {"split": split, "epoch": epoch, "attack": description, "n": n, "seed": seed}


def shares_iterates(attack: Attack) -> bool:
    """Whether `attack` is a PGD run whose iterates are shorter PGDs' results: one restart, in
    eval mode."""
    return isinstance(attack, PGD) and attack.restarts == 1 and attack.mode == "eval"


def _accuracy(
    ckpt: Checkpoint, spec: str, attack: Attack, x: torch.Tensor, y: torch.Tensor, seed: int
) -> pd.DataFrame:
    """One row: the checkpoint's accuracy under `attack` on (x, y), randomness fixed by `seed`,
    with what the attack's own checks flagged (AutoAttack's) when it makes any."""
    attack.take_flags()  # only this checkpoint's
    train_mode = spec.endswith(TRAIN_MODE)
    with seeded(seed, ckpt.device):
        acc = accuracy_under(
            ckpt.model,
            attack,
            x,
            y,
            batch_size=ckpt.run.config.eval_batch_size,
            device=ckpt.device,
            mode="train" if train_mode else "eval",
        )
    description = attack.describe() + (", judged in train mode" if train_mode else "")
    row = {"epoch": ckpt.epoch, "attack": spec, "accuracy": acc, "description": description}
    flags = attack.take_flags()
    return pd.DataFrame([row if flags is None else {**row, "flags": flags}])


def _pgd_accuracy(
    ckpt: Checkpoint,
    split: Split,
    spec: str,
    attack: PGD,
    x: torch.Tensor,
    y: torch.Tensor,
    n: int | None,
    seed: int,
) -> pd.DataFrame:
    """`_accuracy`'s row for a PGD, with the mean loss under it, from one run that also scores
    the shorter PGDs of SHARED_STOPS (same start, same step) and caches them as their own."""
    steps = [k for k in SHARED_STOPS if k < attack.steps] + [attack.steps]
    with seeded(seed, ckpt.device), model_mode(ckpt.model, attack.mode):
        results = losses_along(
            ckpt.model,
            attack,
            steps,
            x,
            y,
            batch_size=ckpt.run.config.eval_batch_size,
            device=ckpt.device,
        )
    for k, (loss, accuracy) in results.items():
        description = attack.first(k).describe()
        row = {
            "epoch": ckpt.epoch,
            "attack": re.sub(r"\d+$", str(k), spec),
            "accuracy": accuracy,
            "description": description,
            "loss": loss,
        }
        frame = pd.DataFrame([row])
        if k < attack.steps:
            params = accuracy_params(split, ckpt.epoch, description, n, seed)
            store(ckpt.run, "accuracy", params, [ckpt.path], frame)
    return frame


def accuracy_table(
    run: Source,
    split: Split,
    attacks: Sequence[str],
    epochs: Sequence[int],
    *,
    n: int | None = None,
    seed: int = 0,
    eps255: float | None = None,
    restarts: int = 1,
    sigma255: float | None = None,
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Accuracy per (epoch, attack) on the 'test' or 'val' split; ε and σ in /255, cached."""
    if not attacks:
        raise ValueError("name at least one attack")
    device = resolve_device(device)
    eps255 = run.config.eps255 if eps255 is None else eps255
    built = {
        spec.strip().lower(): make_attack(
            spec.strip().lower().removesuffix(TRAIN_MODE),
            eps255 / 255,
            restarts=restarts,
            sigma=None if sigma255 is None else sigma255 / 255,
        )
        for spec in attacks
    }
    data = run_data(run, data_dir)
    x, y = (data.test_x, data.test_y) if split == "test" else (data.val_x, data.val_y)
    x, y = subset(x, y, n, seed)
    rows = []
    for epoch in progress(epochs, f"{split} accuracy {run.name}"):
        ckpt = Checkpoint(run, epoch, device)
        for spec, attack in built.items():
            train_mode = spec.endswith(TRAIN_MODE)
            description = attack.describe() + (TRAIN_MODE if train_mode else "")
            params = accuracy_params(split, epoch, description, n, seed)
            if shares_iterates(attack) and not train_mode:
                compute = partial(_pgd_accuracy, ckpt, split, spec, attack, x, y, n, seed)
            else:
                compute = partial(_accuracy, ckpt, spec, attack, x, y, seed)
            rows.append(cached(run, "accuracy", params, [ckpt.path], compute))
    table = pd.concat(rows, ignore_index=True)
    return table.assign(n=len(y), seed=seed, eps=eps255)  # the column is in /255


def val_best_epoch(
    run: Source,
    *,
    attack: str = BEST_BY,
    seed: int = 0,
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
) -> int:
    """val-best: the saved epoch with the highest accuracy under `attack` on the whole held-out
    split (`robdrop.training.best`: the later one on ties)."""
    if run.config.val_size == 0:
        raise ValueError(
            f"'best' needs a held-out validation split, but run {run.name} was trained with "
            "val_size 0; retrain with --val-size N or name the epochs"
        )
    table = accuracy_table(
        run, "val", [attack], require_epochs(run), seed=seed, device=device, data_dir=data_dir
    )
    return best_epoch(table.set_index("epoch")["accuracy"])


def require_epochs(run: Source) -> list[int]:
    """The run's saved epochs; a run without any is an error."""
    epochs = run.epochs()
    if not epochs:
        raise ValueError(f"run {run.path} has no checkpoint yet")
    return epochs


def resolve_epochs(
    run: Source,
    epochs: Epochs,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
) -> list[int]:
    """'all', 'last', 'best' (= 'val-best'), 'probe-best' (best.pt's epoch, the monitor's
    choice), one epoch, a list of epochs or a string such as '3,10,30'."""
    saved = require_epochs(run)
    if epochs == "all":
        return saved
    if epochs == "last":
        return saved[-1:]
    if epochs in ("best", "val-best"):
        return [val_best_epoch(run, seed=seed, device=device, data_dir=data_dir)]
    if epochs == "probe-best":
        epochs = [int(run.load_best()["epoch"])]
    if isinstance(epochs, str):
        try:
            epochs = [int(e) for e in epochs.split(",")]
        except ValueError:
            raise ValueError(
                f"epochs must be all, last, best, probe-best or numbers such as 3,10,30, "
                f"not {epochs!r}"
            ) from None
    wanted = [epochs] if isinstance(epochs, int) else list(epochs)
    missing = [e for e in wanted if e not in saved]
    if missing:
        raise ValueError(
            f"run {run.name} has no checkpoint for epoch {', '.join(map(str, missing))} "
            f"(saved: {', '.join(map(str, saved))}; train with --save-every-epoch to keep all)"
        )
    return wanted


def evaluate_run(
    run: Source,
    attacks: Sequence[str] = ("pgd20",),
    epochs: Epochs = "all",
    *,
    n: int | None = None,
    seed: int = 0,
    restarts: int = 1,
    sigma255: float | None = None,
    eps255: float | None = None,
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Test accuracy per (epoch, attack) with the training time of each epoch (Tables 2–4).

    `n` evaluates a subset of n test images drawn with `seed` (default: the whole test set);
    the budget `eps255` (default: the run's training ε) and the Gaussian noise's `sigma255`
    (default ε) are in /255, as is the table's `eps` column.
    """
    chosen = resolve_epochs(run, epochs, seed=seed, device=device, data_dir=data_dir)
    table = accuracy_table(
        run,
        "test",
        attacks,
        chosen,
        n=n,
        seed=seed,
        eps255=eps255,
        restarts=restarts,
        sigma255=sigma255,
        device=device,
        data_dir=data_dir,
    )
    metrics = run.metrics()
    seconds = metrics.set_index("epoch")["seconds"] if "seconds" in metrics else pd.Series()
    table = table.assign(run=run.name, seconds=table["epoch"].map(seconds))
    columns = ["run", "epoch", "attack", "accuracy", "n", "seed", "eps", "description", "seconds"]
    # AutoAttack's own flags, where it ran ('none' when its checks raised nothing)
    flagged = "flags" in table and table["flags"].notna().any()
    return table[[*columns, "flags"]] if flagged else table[columns]
