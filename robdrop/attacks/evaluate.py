"""Accuracy of a model under an attack over fixed images (shared by trainer and analysis)."""

from __future__ import annotations

import torch
from torch import nn

from robdrop.attacks.base import Attack
from robdrop.data import iterate_eval


def accuracy_under(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> float:
    """Fraction of uint8 images `x` still classified correctly after `attack`, in eval mode."""
    if len(y) == 0:
        return float("nan")
    correct = 0
    was_training = model.training
    model.eval()
    try:
        for xb, yb in iterate_eval(x, y, batch_size, device):
            delta = attack(model, xb, yb)
            with torch.no_grad():
                correct += (model(xb + delta).argmax(1) == yb).sum().item()
    finally:
        model.train(was_training)
    return correct / len(y)
