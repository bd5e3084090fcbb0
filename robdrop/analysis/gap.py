"""The perturbation strength gap G_A→B(θ_A^(i)) of Eq. 3, per epoch (Figure 3).

G = L(θ; x + f_B(θ, x, y), y) − L(θ; x + δ_A, y), mean cross-entropy over a fixed test subset,
where δ_A is A's own generator with its learned state (`Method.perturb`) and f_B an attack from
the registry. Everything runs in eval mode: the losses, f_B, and f_A too (methods generate their
training perturbations in train mode; here they see the eval-mode model the losses are taken
on, and leave its BatchNorm statistics untouched). For APART δ_A is the input perturbation δ_1;
its block perturbations are not part of x + δ_A.
"""

from __future__ import annotations

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


def _gap(
    ckpt: Checkpoint, attack: Attack, x: torch.Tensor, y: torch.Tensor, seed: int
) -> pd.DataFrame:
    """One row: mean losses under δ_A and under f_B at this checkpoint, and their difference."""
    model = ckpt.model
    generators = {  # f_B first: the order of the seeded random draws
        "B": lambda xb, yb: attack(model, xb, yb),
        "A": lambda xb, yb: own_perturbation(ckpt, xb, yb),
    }
    with seeded(seed, ckpt.device):
        results = losses_and_accuracies(
            model, generators, x, y, batch_size=ckpt.run.config.eval_batch_size, device=ckpt.device
        )
    loss_a, loss_b = results["A"][0], results["B"][0]
    return pd.DataFrame(
        [{"epoch": ckpt.epoch, "loss_A": loss_a, "loss_B": loss_b, "gap": loss_b - loss_a}]
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
            cached(run, "gap", params, [ckpt.path], partial(_gap, ckpt, attack, x, y, seed))
        )
    table = pd.concat(rows, ignore_index=True)
    return table.assign(run=run.name, method=run.config.method_key, to=to, n=len(y), seed=seed)
