"""AutoAttack (Croce & Hein 2020), standard L∞ version: a check that PGD-20 does not overstate
robustness (a model that masks gradients falls to its Square attack).

Two implementations, under two specs:

- `autoattack`: the authors' own (`pyautoattack` on PyPI, the `autoattack` extra): APGD-CE,
  APGD-T (9 target classes), FAB-T (9 target classes), 100 iterations each, and Square (5,000
  queries), each on the images the previous ones did not break. Its own checks (a randomised or
  dynamic defence, probabilities instead of logits, zero gradients, Square beating the gradient
  attacks) are collected as flags. `autoattack-apgd` runs only its APGD-CE and APGD-T, unchanged:
  a cheaper subset for CPU budgets, named as such wherever it is reported.
- `autoattack-ta`: torchattacks' re-implementation (the `compare` extra), whose gradient attacks
  take 10 iterations: a somewhat weaker AutoAttack for quick looks.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Literal, get_args

import torch
from torch import nn

from robdrop.attacks.base import Attack, AttackMode, clip_delta

# the reference implementation's sub-attacks: standard, or its two APGD attacks only
Version = Literal["standard", "apgd"]
VERSIONS: tuple[str, ...] = get_args(Version)
SUBSET = {"standard": None, "apgd": ["apgd-ce", "apgd-t"]}
NO_FLAGS = "none"  # what a row says when AutoAttack's checks ran and raised nothing


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def optional(module: str, spec: str, extra: str) -> ModuleType:
    """`module`, imported on first use; one sentence naming the extra when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"the {spec} attack needs {module}: pip install robdrop[{extra}]"
        ) from None


class _Collect(logging.Handler):
    """Keeps the warnings a logger emits (AutoAttack's flags)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def collected(logger: logging.Logger) -> Iterator[list[str]]:
    """The warnings `logger` emits inside, kept instead of printed."""
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class AutoAttackBase(Attack):
    """An AutoAttack in eval mode and fp32 whose seed is drawn from torch's RNG on every call, so
    `seeded` fixes it like PGD's random starts (the sub-attacks reseed the global RNG, which
    `seeded` restores for the caller afterwards)."""

    def __init__(self, eps: float, *, mode: AttackMode = "eval", amp: bool = False) -> None:
        if mode != "eval":
            raise ValueError(f"autoattack evaluates a model in eval mode only, not {mode!r}")
        super().__init__(eps, mode=mode, amp=False)  # fp32: the attack is an evaluation

    @staticmethod
    def draw_seed() -> int:
        """The implementation's seed for one call, from torch's (possibly seeded) RNG."""
        return int(torch.randint(2**31 - 1, ()))


class ReferenceAutoAttack(AutoAttackBase):
    """pyautoattack.AutoAttack(norm='Linf', version='standard') at ε (`version` 'apgd': its
    APGD-CE and APGD-T only); AutoAttack's own flags are kept for `take_flags`."""

    def __init__(
        self, eps: float, *, version: Version = "standard", mode: AttackMode = "eval", **kw: bool
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"AutoAttack's version is {' or '.join(VERSIONS)}, not {version!r}")
        super().__init__(eps, mode=mode, **kw)
        self.version = version
        spec = "autoattack" if version == "standard" else f"autoattack-{version}"
        self.lib = optional("pyautoattack", spec, "autoattack")
        self.flags: list[str] = []

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        adversary = self.lib.AutoAttack(
            model, norm="Linf", eps=self.eps, version="standard", seed=self.draw_seed(),
            device=x.device,
        )  # fmt: skip
        if SUBSET[self.version] is not None:  # the standard settings, fewer sub-attacks
            adversary.attacks_to_run = list(SUBSET[self.version])
        with collected(adversary.logger) as messages:
            x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(x))
        self.flags += [m for m in messages if m not in self.flags]
        return clip_delta(x_adv.to(x.device) - x, x, self.eps)

    def take_flags(self) -> str | None:
        flags, self.flags = self.flags, []
        return "; ".join(flags) or NO_FLAGS

    def describe(self) -> str:
        parts = "APGD-CE, APGD-T" if self.version == "apgd" else "APGD-CE, APGD-T, FAB-T, Square"
        return (
            f"AutoAttack[{self.version} Linf: {parts}, 100 it., pyautoattack "
            f"{self.lib.__version__}] eps={self.eps * 255:.4g}/255 mode=eval"
        )


class TorchattacksAutoAttack(AutoAttackBase):
    """torchattacks.AutoAttack(norm='Linf', version='standard') at ε: 10 iterations per gradient
    attack where the reference takes 100."""

    def __init__(self, eps: float, *, mode: AttackMode = "eval", amp: bool = False) -> None:
        super().__init__(eps, mode=mode, amp=amp)
        self.lib = optional("torchattacks", "autoattack-ta", "compare")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            n_classes = model(x[:1]).shape[1]
        attack = self.lib.AutoAttack(
            model, norm="Linf", eps=self.eps, version="standard", n_classes=n_classes,
            seed=self.draw_seed(),
        )  # fmt: skip
        return clip_delta(attack(x, y) - x, x, self.eps)

    def describe(self) -> str:
        return (
            f"AutoAttack[standard Linf, torchattacks {self.lib.__version__}, 10 it.] "
            f"eps={self.eps * 255:.4g}/255 mode=eval"
        )
