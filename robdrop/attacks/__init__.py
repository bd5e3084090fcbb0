"""Perturbation generators by short spec; one registry for training, evaluation and analysis.

Specs: clean, fgsm, ffgsm (F+FGSM), pgd<N>, cw<N>, random, gauss, and for evaluation only
autoattack (the authors' standard AutoAttack, the `autoattack` extra), autoattack-apgd (its
APGD-CE and APGD-T only) and autoattack-ta (torchattacks' 10-iteration variant, the `compare`
extra). Budgets are floats in image units here (`eps=8/255`); `--to pgd10` in an analysis means
exactly the PGD-10 used to train.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from robdrop.attacks.autoattack import (
    AutoAttackBase,
    MissingExtra,
    ReferenceAutoAttack,
    TorchattacksAutoAttack,
)
from robdrop.attacks.base import (
    Attack,
    AttackMode,
    clip_delta,
    input_gradient,
    model_mode,
    uniform_start,
)
from robdrop.attacks.noise import Clean, GaussianNoise, UniformNoise
from robdrop.attacks.pgd import PGD, Loss


@dataclass(frozen=True)
class Settings:
    """What a spec leaves open: PGD's step (image units; default ε/4), restarts, the Gaussian σ
    (default ε), the model's mode while attacking, mixed precision."""

    step: float | None = None
    restarts: int = 1
    sigma: float | None = None
    mode: AttackMode = "eval"
    amp: bool = False


Builder = Callable[[float, "int | None", Settings], Attack]


def _pgd(loss: Loss) -> Builder:
    def build(eps: float, steps: int | None, s: Settings) -> Attack:
        step = eps / 4 if s.step is None else s.step
        return PGD(eps, steps, step, restarts=s.restarts, loss=loss, mode=s.mode, amp=s.amp)

    return build


# spec -> (builder(ε, the number in the spec, settings), whether the spec takes a number)
ATTACKS: dict[str, tuple[Builder, bool]] = {
    "clean": (lambda eps, n, s: Clean(eps, mode=s.mode, amp=s.amp), False),
    "fgsm": (lambda eps, n, s: PGD(eps, 1, eps, random_start=False, mode=s.mode, amp=s.amp), False),
    "ffgsm": (lambda eps, n, s: PGD(eps, 1, 1.25 * eps, mode=s.mode, amp=s.amp), False),
    "pgd": (_pgd("ce"), True),
    "cw": (_pgd("cw"), True),
    "random": (lambda eps, n, s: UniformNoise(eps, mode=s.mode, amp=s.amp), False),
    "gauss": (lambda eps, n, s: GaussianNoise(eps, sigma=s.sigma, mode=s.mode, amp=s.amp), False),
    "autoattack": (lambda eps, n, s: ReferenceAutoAttack(eps, mode=s.mode, amp=s.amp), False),
    "autoattack-apgd": (
        lambda eps, n, s: ReferenceAutoAttack(eps, version="apgd", mode=s.mode, amp=s.amp),
        False,
    ),
    "autoattack-ta": (lambda eps, n, s: TorchattacksAutoAttack(eps, mode=s.mode, amp=s.amp), False),
}
ALIASES = {"f+fgsm": "ffgsm"}
SPEC_HELP = ", ".join(f"{k}<N>" if numbered else k for k, (_, numbered) in ATTACKS.items())


def make_attack(
    spec: str,
    eps: float,
    *,
    step: float | None = None,
    restarts: int = 1,
    sigma: float | None = None,
    mode: AttackMode = "eval",
    amp: bool = False,
) -> Attack:
    """Build an attack from its spec, ε in image units.

    `step` overrides the step size of pgd<N>/cw<N> (default ε/4, i.e. 2/255 at ε = 8/255);
    FGSM steps ε from zero, F+FGSM steps 1.25 ε from a uniform start (Wong et al. 2020).
    """
    key = spec.strip().lower()
    key = ALIASES.get(key, key)
    m = re.fullmatch(r"(.*?)(\d*)", key)
    base, number = m.group(1), m.group(2)
    settings = Settings(step, restarts, sigma, mode, amp)
    if key in ATTACKS and not ATTACKS[key][1]:
        return ATTACKS[key][0](eps, None, settings)
    if base in ATTACKS and ATTACKS[base][1] and number and int(number) > 0:
        return ATTACKS[base][0](eps, int(number), settings)
    raise ValueError(f"unknown attack {spec!r}; choose one of {SPEC_HELP}")


__all__ = [
    "ATTACKS",
    "PGD",
    "SPEC_HELP",
    "Attack",
    "AttackMode",
    "AutoAttackBase",
    "Clean",
    "GaussianNoise",
    "MissingExtra",
    "ReferenceAutoAttack",
    "TorchattacksAutoAttack",
    "UniformNoise",
    "clip_delta",
    "input_gradient",
    "make_attack",
    "model_mode",
    "uniform_start",
]
