"""Perturbations that use no gradient: none, uniform noise in the ε-ball, Gaussian noise."""

from __future__ import annotations

import torch
from torch import nn

from robdrop.attacks.base import Attack, uniform_start


class Clean(Attack):
    """δ = 0: clean accuracy through the same code path as every attack."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def describe(self) -> str:
        return "clean"


class UniformNoise(Attack):
    """f_Random of the paper: uniform noise in [−ε, ε], clipped to the image range."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return uniform_start(x, self.eps)

    def describe(self) -> str:
        return f"uniform noise in the {self.eps * 255:.4g}/255 ball"


class GaussianNoise(Attack):
    """x + N(0, σ²), clipped to [0, 1]; not bounded by ε. The paper gives no σ: default σ = ε."""

    bounded = False

    def __init__(self, eps: float, *, sigma: float | None = None, **kw) -> None:
        super().__init__(eps, **kw)
        self.sigma = eps if sigma is None else sigma

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x + self.sigma * torch.randn_like(x)).clamp(0, 1) - x

    def describe(self) -> str:
        return f"Gaussian noise sigma={self.sigma * 255:.4g}/255"
