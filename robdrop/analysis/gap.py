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
import torch.nn.functional as F

from robdrop.analysis.cache import cached
from robdrop.analysis.common import (
    Checkpoint,
    device_of,
    fixed_test_subset,
    own_perturbation,
    progress,
    seeded,
)
from robdrop.analysis.evaluate import Epochs, resolve_epochs
from robdrop.attacks import Attack, make_attack
from robdrop.data import iterate_eval
from robdrop.runs import Run


def _gap(
    ckpt: Checkpoint, attack: Attack, x: torch.Tensor, y: torch.Tensor, seed: int
) -> pd.DataFrame:
    """One row: mean losses under δ_A and under f_B at this checkpoint, and their difference."""
    model, sums = ckpt.model, torch.zeros(2, dtype=torch.float64)
    with seeded(seed, ckpt.device):
        for xb, yb in iterate_eval(x, y, ckpt.run.config.eval_batch_size, ckpt.device):
            delta_b = attack(model, xb, yb)
            delta_a = own_perturbation(ckpt, xb, yb)
            with torch.no_grad():
                for i, delta in enumerate((delta_a, delta_b)):
                    sums[i] += F.cross_entropy(model(xb + delta), yb, reduction="sum").item()
    loss_a, loss_b = (sums / len(y)).tolist()
    return pd.DataFrame(
        [{"epoch": ckpt.epoch, "loss_A": loss_a, "loss_B": loss_b, "gap": loss_b - loss_a}]
    )


def strength_gap(
    run: Run,
    to: str = "pgd10",
    *,
    n: int | None = 1000,
    seed: int = 0,
    epochs: Epochs = "all",
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
) -> pd.DataFrame:
    """G_{A→B} per epoch of run A against attack `to` at A's training ε (cached per epoch)."""
    device = device_of(device)
    attack = make_attack(to, run.config.eps_float)
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
