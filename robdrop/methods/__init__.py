"""The method registry: one line per method. Names may carry a number (pgd10, free8, atta10)."""

from __future__ import annotations

import re

from torch import nn

from robdrop.methods.apart import APART, APARTNoInit, FGSMPlus
from robdrop.methods.atta import ATTA
from robdrop.methods.base import Method, MethodContext, StepResult
from robdrop.methods.free import Free
from robdrop.methods.gradalign import GradAlign
from robdrop.methods.nfgsm import NFGSM
from robdrop.methods.pgd import PGDTraining
from robdrop.methods.single_step import FGSM, FastFGSM

# name -> (class, whether the name takes a number)
METHODS: dict[str, tuple[type[Method], bool]] = {
    "fgsm": (FGSM, False),
    "ffgsm": (FastFGSM, False),
    "pgd": (PGDTraining, True),
    "free": (Free, True),
    "atta": (ATTA, True),
    "apart": (APART, False),
    "fgsm+": (FGSMPlus, False),
    "apart-noinit": (APARTNoInit, False),
    "gradalign": (GradAlign, False),
    "nfgsm": (NFGSM, False),
}
ALIASES = {
    "f+fgsm": "ffgsm",
    "fast-fgsm": "ffgsm",
    "apart-nolayer": "fgsm+",
    "n-fgsm": "nfgsm",
    "grad-align": "gradalign",
}


def parse_method(name: str) -> tuple[type[Method], int | None, str]:
    """`pgd10` -> (PGDTraining, 10, 'pgd10'); raises one clear ValueError for unknown names."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    m = re.fullmatch(r"(.*?)(\d*)", key)
    base, number = m.group(1), m.group(2)
    if key in METHODS and not METHODS[key][1]:
        return METHODS[key][0], None, key
    if base in METHODS and METHODS[base][1] and number and int(number) > 0:
        return METHODS[base][0], int(number), key
    names = ", ".join(f"{k}<N>" if takes else k for k, (_, takes) in METHODS.items())
    raise ValueError(f"unknown method {name!r}; choose one of {names}")


def build_method(name: str, model: nn.Module, ctx: MethodContext) -> Method:
    """Instantiate a method by name for `model`."""
    cls, number, _ = parse_method(name)
    return cls(model, ctx, number)


__all__ = ["METHODS", "Method", "MethodContext", "StepResult", "build_method", "parse_method"]
