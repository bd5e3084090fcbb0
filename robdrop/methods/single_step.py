"""Single-step baselines: FGSM (zero start, step ε) and F+FGSM (Wong et al. 2020)."""

from __future__ import annotations

from robdrop.methods.base import CYCLED, WONG, AttackMethod, Recipe

# Wong et al.'s train_fgsm.py: SGD weight decay 5e-4, CyclicLR with its default momentum cycle
WONG_FGSM = Recipe(5e-4, WONG.format("train_fgsm.py"), momentum_at_peak=CYCLED)


class FGSM(AttackMethod):
    """δ = ε · sign(∇x L) from zero, no random start: the method whose robustness collapses."""

    single_step = True
    name = "fgsm"
    attack_spec = "fgsm"
    recipe = WONG_FGSM


class FastFGSM(AttackMethod):
    """F+FGSM: uniform start in [−ε, ε], one step of 1.25 ε, clipped to the ε-ball."""

    single_step = True
    name = "ffgsm"
    attack_spec = "ffgsm"
    recipe = WONG_FGSM
