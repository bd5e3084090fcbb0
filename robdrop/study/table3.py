"""Table 3: WideResNet-34-10 on CIFAR-10 (the `paper-cifar10-wrn34` runs, or the paper's)."""

from __future__ import annotations

from robdrop.study.method_table import MethodTable


class Table3(MethodTable):
    name = "table3"
    caption = "Table 3: WideResNet-34-10 on CIFAR-10"
    methods = ("ffgsm", "free8", "pgd10", "atta10", "apart")
    has_autoattack = True
