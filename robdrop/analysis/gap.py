"""The perturbation strength gap G_A→B(θ_A^(i)) of Eq. 3, per epoch (Figure 3).

G = L(θ; x + f_B(θ, x, y), y) − L(θ; x + δ_A, y), mean cross-entropy over a fixed test subset,
where δ_A is A's own generator with its learned state (`Method.perturb`) and f_B an attack from
the registry. Everything runs in eval mode: the losses, f_B, and f_A too (methods generate their
training perturbations in train mode; here they see the eval-mode model the losses are taken
on, and leave its BatchNorm statistics untouched). For APART δ_A is the input perturbation δ_1;
its block perturbations are not part of x + δ_A.

The loss under f_B is read off the cached accuracy evaluation where there is one: the PGD-20 of
the accuracy curves passes through PGD-10 and scores it on its way, so a study that draws a
run's curve before its gap does not attack each checkpoint twice.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import torch

from robdrop.analysis.cache import cached, lookup
from robdrop.analysis.common import (
    Checkpoint,
    Source,
    fixed_test_subset,
    own_perturbation,
    progress,
)
from robdrop.analysis.evaluate import Epochs, accuracy_params, resolve_epochs, shares_iterates
from robdrop.attacks import Attack, make_attack
from robdrop.attacks.base import rng_state, seeded
from robdrop.attacks.evaluate import losses_and_accuracies
from robdrop.training.factories import resolve_device


def _scored_loss(ckpt: Checkpoint, attack: Attack, n: int | None, seed: int) -> float | None:
    """The mean loss under `attack` on these test images where an accuracy evaluation already
    scored it (a longer PGD's run passes through PGD-10: `accuracy_table`), else None."""
    if not shares_iterates(attack):
        return None
    params = accuracy_params("test", ckpt.epoch, attack.describe(), n, seed)
    entry = lookup(ckpt.run, "accuracy", params, [ckpt.path])
    return None if entry is None or "loss" not in entry else float(entry["loss"].iloc[0])


def _gap(
    ckpt: Checkpoint,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    n: int | None,
    seed: int,
) -> pd.DataFrame:
    """One row: mean losses under δ_A and under f_B at this checkpoint, and their difference.

    f_B's loss comes from its accuracy evaluation where one is cached and A's generator draws no
    random numbers: f_B's random starts are then those of f_B alone, so the loss is the same.
    """
    model = ckpt.model
    own = {"A": lambda xb, yb: own_perturbation(ckpt, xb, yb)}
    batches = {"batch_size": ckpt.run.config.eval_batch_size, "device": ckpt.device}
    scored = _scored_loss(ckpt, attack, n, seed)
    if scored is not None:
        with seeded(seed, ckpt.device):
            before = rng_state(ckpt.device)
            loss_a = losses_and_accuracies(model, own, x, y, **batches)["A"][0]
            drew = not all(map(torch.equal, before, rng_state(ckpt.device)))
        if not drew:
            return _row(ckpt.epoch, loss_a, scored)
    generators = {"B": lambda xb, yb: attack(model, xb, yb), **own}  # f_B draws first
    with seeded(seed, ckpt.device):
        results = losses_and_accuracies(model, generators, x, y, **batches)
    return _row(ckpt.epoch, results["A"][0], results["B"][0])


def _row(epoch: int, loss_a: float, loss_b: float) -> pd.DataFrame:
    return pd.DataFrame(
        [{"epoch": epoch, "loss_A": loss_a, "loss_B": loss_b, "gap": loss_b - loss_a}]
    )


def strength_gap(
    run: Source,
    to: str = "pgd10",
    *,
    n: int | None = 1000,
    seed: int = 0,
    epochs: Epochs = "all",
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
) -> pd.DataFrame:
    """G_{A→B} per epoch of run A against attack `to` at A's training ε (cached per epoch)."""
    device = resolve_device(device)
    attack = make_attack(to, run.config.eps_image)
    x, y = fixed_test_subset(run, n, seed, data_dir)
    rows = []
    chosen = resolve_epochs(run, epochs, seed=seed, device=device, data_dir=data_dir)
    for epoch in progress(chosen, f"gap {run.name}"):
        ckpt = Checkpoint(run, epoch, device)
        params = {"epoch": epoch, "to": attack.describe(), "n": n, "seed": seed}
        rows.append(
            cached(run, "gap", params, [ckpt.path], partial(_gap, ckpt, attack, x, y, n, seed))
        )
    table = pd.concat(rows, ignore_index=True)
    return table.assign(run=run.name, method=run.config.method_key, to=to, n=len(y), seed=seed)
