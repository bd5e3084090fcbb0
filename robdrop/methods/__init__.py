"""The method registry: one line per method. Names may carry a number (pgd10, free8, atta10),
which the method's `number_name` says what it counts (steps, replays)."""

from __future__ import annotations

import re
from typing import NamedTuple

from torch import nn

from robdrop.methods.apart import APART, APARTNoInit, FGSMPlus
from robdrop.methods.atta import ATTA
from robdrop.methods.base import Method, MethodContext, Recipe, StepResult
from robdrop.methods.free import Free
from robdrop.methods.gradalign import GradAlign
from robdrop.methods.nfgsm import NFGSM
from robdrop.methods.pgd import PGDTraining
from robdrop.methods.single_step import FGSM, FastFGSM

METHODS: dict[str, type[Method]] = {
    "fgsm": FGSM,
    "ffgsm": FastFGSM,
    "pgd": PGDTraining,
    "free": Free,
    "atta": ATTA,
    "apart": APART,
    "fgsm+": FGSMPlus,
    "apart-noinit": APARTNoInit,
    "gradalign": GradAlign,
    "nfgsm": NFGSM,
}
ALIASES = {
    "f+fgsm": "ffgsm",
    "fast-fgsm": "ffgsm",
    "apart-nolayer": "fgsm+",
    "n-fgsm": "nfgsm",
    "grad-align": "gradalign",
}


class MethodSpec(NamedTuple):
    """A method name resolved: its class, the number in the name (or None) and the run key."""

    cls: type[Method]
    number: int | None
    key: str


def parse_method(name: str) -> MethodSpec:
    """`pgd10` -> MethodSpec(PGDTraining, 10, 'pgd10'); one clear ValueError for unknown names."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    m = re.fullmatch(r"(.*?)(\d*)", key)
    base, number = m.group(1), m.group(2)
    if key in METHODS and METHODS[key].number_name is None:
        return MethodSpec(METHODS[key], None, key)
    if base in METHODS and METHODS[base].number_name and number and int(number) > 0:
        return MethodSpec(METHODS[base], int(number), key)
    names = ", ".join(f"{k}<N>" if c.number_name else k for k, c in METHODS.items())
    raise ValueError(f"unknown method {name!r}; choose one of {names}")


def build_method(
    name: str, model: nn.Module, ctx: MethodContext, *, learner: nn.Module | None = None
) -> Method:
    """Instantiate a method by name for `model` (`learner`: its DDP wrapper under torchrun)."""
    spec = parse_method(name)
    return spec.cls(model, ctx, spec.number, learner=learner)


__all__ = [
    "METHODS",
    "Method",
    "MethodContext",
    "MethodSpec",
    "Recipe",
    "StepResult",
    "build_method",
    "parse_method",
]
