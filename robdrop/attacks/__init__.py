"""Perturbation generators by short spec; one registry for training, evaluation and analysis.

Specs: clean, fgsm, ffgsm (F+FGSM), pgd<N>, cw<N>, random, gauss, autoattack (torchattacks'
standard AutoAttack; evaluation only, needs the `compare` extra). Budgets are floats in image
units here (`eps=8/255`); `--to pgd10` in an analysis means exactly the PGD-10 used to train.
"""

from __future__ import annotations

import re

from robdrop.attacks.autoattack import AutoAttack, MissingExtra
from robdrop.attacks.base import Attack, clip_delta, input_gradient, model_mode, uniform_start
from robdrop.attacks.noise import Clean, GaussianNoise, UniformNoise
from robdrop.attacks.pgd import PGD

SPEC_HELP = "clean, fgsm, ffgsm, pgd<N>, cw<N>, random, gauss, autoattack"


def make_attack(
    spec: str,
    eps: float,
    *,
    step: float | None = None,
    restarts: int = 1,
    sigma: float | None = None,
    mode: str = "eval",
    amp: bool = False,
) -> Attack:
    """Build an attack from its spec.

    `step` overrides the step size of pgd<N>/cw<N> (default ε/4, i.e. 2/255 at ε = 8/255);
    FGSM steps ε from zero, F+FGSM steps 1.25 ε from a uniform start (Wong et al. 2020).
    """
    kw = {"mode": mode, "amp": amp}
    spec = spec.strip().lower()
    if spec == "clean":
        return Clean(eps, **kw)
    if spec == "random":
        return UniformNoise(eps, **kw)
    if spec == "gauss":
        return GaussianNoise(eps, sigma=sigma, **kw)
    if spec == "autoattack":
        return AutoAttack(eps, **kw)
    if spec == "fgsm":
        return PGD(eps, 1, eps, random_start=False, **kw)
    if spec in ("ffgsm", "f+fgsm"):
        return PGD(eps, 1, 1.25 * eps, random_start=True, **kw)
    m = re.fullmatch(r"(pgd|cw)(\d+)", spec)
    if m and int(m.group(2)) > 0:
        loss = "ce" if m.group(1) == "pgd" else "cw"
        step = eps / 4 if step is None else step
        return PGD(eps, int(m.group(2)), step, restarts=restarts, loss=loss, **kw)
    raise ValueError(f"unknown attack {spec!r}; choose one of {SPEC_HELP}")


__all__ = [
    "PGD",
    "SPEC_HELP",
    "Attack",
    "AutoAttack",
    "Clean",
    "GaussianNoise",
    "MissingExtra",
    "UniformNoise",
    "clip_delta",
    "input_gradient",
    "make_attack",
    "model_mode",
    "uniform_start",
]
