"""Losses and accuracies of a model under perturbations over fixed images (shared by the trainer,
its monitor and the analyses)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from robdrop.attacks.base import Attack, AttackMode, model_mode
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
            delta = generate(xb, yb)
            with torch.no_grad():
                logits = model(xb + delta)
                loss[name] += F.cross_entropy(logits, yb, reduction="sum").item()
                correct[name] += (logits.argmax(1) == yb).sum().item()
    return {name: (loss[name] / len(y), correct[name] / len(y)) for name in generators}


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
