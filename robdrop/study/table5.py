"""Table 5: ResNet-50 on ImageNet at ε = 2/255: clean and PGD-10 accuracy and the total training
time (the `paper-imagenet-r50` runs, or the paper's; its Free-4 and ATTA-2 are ImageNet's)."""

from __future__ import annotations

from robdrop.study.method_table import MethodTable


class Table5(MethodTable):
    name = "table5"
    caption = "Table 5: ResNet-50 on ImageNet (total training time)"
    methods = ("ffgsm", "free4", "atta2", "apart")
    attacks = ("clean", "pgd10")
    total_hours = True
