"""Table 4: PreAct ResNet-18 on CIFAR-100 (the `paper-cifar100-prn18` runs, or the paper's)."""

from __future__ import annotations

from robdrop.study.method_table import MethodTable


class Table4(MethodTable):
    name = "table4"
    caption = "Table 4: PreAct ResNet-18 on CIFAR-100"
    methods = ("ffgsm", "free8", "pgd10", "atta10", "apart")
    has_autoattack = True
