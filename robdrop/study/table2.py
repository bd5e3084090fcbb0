"""Table 2: PreAct ResNet-18 on CIFAR-10, every method of the paper: accuracy under clean data,
PGD-20, C&W-20, AutoAttack and Gaussian noise, and the time per epoch."""

from __future__ import annotations

from typing import Any

import numpy as np

from robdrop.study.method_table import MethodTable
from robdrop.study.study import Study
from robdrop.study.target import holds


class Table2(MethodTable):
    name = "table2"
    caption = "Table 2: PreAct ResNet-18 on CIFAR-10"
    methods = ("fgsm", "ffgsm", "free8", "pgd10", "atta10", "apart")
    has_autoattack = True

    def claims(self, study: Study) -> list[dict[str, Any]]:
        seconds = {  # per epoch, averaged over each method's seeds
            m: np.mean([study.open(spec).metrics()["seconds"].mean() for spec in study.specs(m)])
            for m in ("apart", "pgd10", "fgsm")
        }
        ratio, over_fgsm = seconds["apart"] / seconds["pgd10"], seconds["apart"] / seconds["fgsm"]
        return [
            {
                "claim": "APART costs ≤ 1/4 of PGD-10 per epoch",
                "measured": f"{seconds['apart']:.1f} s vs {seconds['pgd10']:.1f} s = {ratio:.2f} "
                f"(FGSM {seconds['fgsm']:.1f} s: APART = {over_fgsm:.2f} × FGSM)",
                "holds": holds(bool(ratio <= 0.25)),
            }
        ]
