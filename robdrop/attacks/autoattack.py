"""AutoAttack (Croce & Hein 2020), standard L∞ version, through torchattacks: a check that PGD-20
does not overstate robustness (a model that masks gradients falls to its Square attack).

torchattacks' "standard" runs APGD-CE, APGD-T (every other class as a target), FAB-T and Square
(5,000 queries), each on the images the previous ones did not break. Its gradient attacks take
10 iterations where the reference implementation (fra31/auto-attack, not on PyPI) takes 100, so it
is a somewhat weaker AutoAttack than the published one; `describe()` says which version ran.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import nn

from robdrop.attacks.base import Attack, clip_delta


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def _torchattacks() -> ModuleType:
    """torchattacks, imported on first use (an optional dependency)."""
    try:
        import torchattacks
    except ImportError:
        raise MissingExtra(
            "the autoattack attack needs torchattacks: pip install robdrop[compare]"
        ) from None
    return torchattacks


class AutoAttack(Attack):
    """torchattacks.AutoAttack(norm='Linf', version='standard') at ε, in eval mode and fp32.

    Its seed is drawn from torch's RNG on every call, so `seeded` fixes it like PGD's random
    starts; the sub-attacks reseed the RNG, which `seeded` restores for the caller afterwards.
    """

    def __init__(self, eps: float, *, mode: str = "eval", amp: bool = False) -> None:
        if mode != "eval":
            raise ValueError(f"autoattack evaluates a model in eval mode only, not {mode!r}")
        super().__init__(eps, mode=mode, amp=False)  # fp32: the attack is an evaluation
        self.lib = _torchattacks()

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            n_classes = model(x[:1]).shape[1]
        seed = int(torch.randint(2**31 - 1, ()))
        attack = self.lib.AutoAttack(
            model, norm="Linf", eps=self.eps, version="standard", n_classes=n_classes, seed=seed
        )
        return clip_delta(attack(x, y) - x, x, self.eps)

    def describe(self) -> str:
        return (
            f"AutoAttack[standard Linf, torchattacks {self.lib.__version__}] "
            f"eps={self.eps * 255:.4g}/255 mode=eval"
        )
