"""Table 6: the ablation of APART on CIFAR-10, without layer-wise perturbations (= FGSM+) and
without the learned initialisation. The paper's "Pre-ResNet20" is the released code's preact20(),
i.e. PreAct ResNet-18, so its APART row is Table 2's."""

from __future__ import annotations

from typing import ClassVar

from robdrop.study.method_table import MethodTable


class Table6(MethodTable):
    name = "table6"
    caption = "Table 6: ablation of APART on CIFAR-10"
    methods = ("apart", "fgsm+", "apart-noinit")
    attacks = ("clean", "pgd20")
    # rows named by what each ablation removes
    row_names: ClassVar[dict[str, str]] = {
        "apart": "APART",
        "fgsm+": "APART w/o layer-wise perturbation (= FGSM+)",
        "apart-noinit": "APART w/o perturbation initialisation",
    }
