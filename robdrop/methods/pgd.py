"""PGD-N adversarial training (Madry et al. 2017): uniform start, N steps of α (2/255 at 8/255)."""

from __future__ import annotations

from typing import Any, ClassVar

from robdrop.attacks import Attack, make_attack
from robdrop.methods.base import CYCLED, WONG, AttackMethod, Recipe


class PGDTraining(AttackMethod):
    """Trains on PGD-N perturbations; N is the number in the method name (pgd10 → 10 steps)."""

    name = "pgd"
    number_name = "steps"
    recipe = Recipe(5e-4, WONG.format("train_pgd.py"), momentum_at_peak=CYCLED)
    defaults: ClassVar[dict[str, Any]] = {"step255": None}  # in /255; None = ε/4
    renamed_options: ClassVar[dict[str, str]] = {"step": "step255"}

    @property
    def steps(self) -> int:
        """N: the PGD steps per perturbation (ATTA's K)."""
        return self.number

    def make_attack(self) -> Attack:
        step = self.options["step255"]
        return make_attack(
            f"pgd{self.steps}",
            self.ctx.eps,
            step=None if step is None else step / 255,
            mode="train",
            amp=self.ctx.amp,
        )
