"""Losses and accuracies of a model under perturbations over fixed images (shared by the trainer,
its monitor and the analyses)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robdrop.attacks.base import Attack, AttackMode, model_mode
from robdrop.attacks.pgd import PGD
from robdrop.data import iterate_eval

Generator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> δ


def losses_and_accuracies(
    model: nn.Module,
    generators: Mapping[str, Generator],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, tuple[float, float]]:
    """Per generator: mean cross-entropy and accuracy of `model` on uint8 images `x` + δ.

    Generators run in the order given, batch by batch, so seeded randomness is reproducible;
    the model's mode is the caller's to set.
    """
    loss = dict.fromkeys(generators, 0.0)
    correct = dict.fromkeys(generators, 0)
    for xb, yb in iterate_eval(x, y, batch_size, device):
        for name, generate in generators.items():
            batch_loss, batch_correct = _score(model, xb, yb, generate(xb, yb))
            loss[name] += batch_loss
            correct[name] += batch_correct
    return {name: (loss[name] / len(y), correct[name] / len(y)) for name in generators}


def losses_along(
    model: nn.Module,
    attack: PGD,
    stops: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[int, tuple[float, float]]:
    """Per k in `stops`: what `losses_and_accuracies` gives `model` under PGD-k, from one run of
    `attack` (its first k iterates are PGD-k's for the same start and step) over each batch.

    One start is drawn per batch, as PGD-k alone draws it; one restart only. The model's mode
    is the caller's to set.
    """
    if attack.restarts != 1 or not set(stops) <= set(range(1, attack.steps + 1)):
        raise ValueError(f"stops must lie in 1…{attack.steps} steps of a one-restart PGD")
    loss = dict.fromkeys(stops, 0.0)
    correct = dict.fromkeys(stops, 0)
    for xb, yb in iterate_eval(x, y, batch_size, device):
        for k, delta in enumerate(attack.iterates(model, xb, yb), start=1):
            if k in loss:
                batch_loss, batch_correct = _score(model, xb, yb, delta.detach())
                loss[k] += batch_loss
                correct[k] += batch_correct
    return {k: (loss[k] / len(y), correct[k] / len(y)) for k in stops}


def _score(
    model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, delta: torch.Tensor
) -> tuple[float, int]:
    """Summed cross-entropy and the number right of `model` on one batch x + δ."""
    with torch.no_grad():
        logits = model(xb + delta)
        loss = F.cross_entropy(logits, yb, reduction="sum").item()
        return loss, (logits.argmax(1) == yb).sum().item()


def accuracy_under(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    mode: AttackMode = "eval",
) -> float:
    """Fraction of uint8 images `x` still classified correctly after `attack`, in eval mode.

    `mode` 'train' judges with BatchNorm on each batch's statistics instead (a sanity check of
    the running statistics), on a copy, so the model's own statistics are left as they were.
    """
    if len(y) == 0:
        return float("nan")
    if mode == "train":
        model = copy.deepcopy(model)
    with model_mode(model, mode):
        generators = {"attack": lambda xb, yb: attack(model, xb, yb)}
        results = losses_and_accuracies(
            model, generators, x, y, batch_size=batch_size, device=device
        )
    return results["attack"][1]
