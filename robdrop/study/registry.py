"""Every figure and table of the paper, in the order a reproduction makes them: one line each.
`reproduce`, `figures`, `--only`, the summary and the notebooks read this registry."""

from __future__ import annotations

from robdrop.study.figure1 import Figure1
from robdrop.study.figure2 import Figure2
from robdrop.study.figure3 import Figure3
from robdrop.study.figure4 import Figure4
from robdrop.study.figure5 import Figure5
from robdrop.study.table2 import Table2
from robdrop.study.table3 import Table3
from robdrop.study.table4 import Table4
from robdrop.study.table5 import Table5
from robdrop.study.table6 import Table6
from robdrop.study.target import Target

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Figure1(),
        Figure2(),
        Figure3(),
        Figure4(),
        Figure5(),
        Table2(),
        Table3(),
        Table4(),
        Table5(),
        Table6(),
    )
}
# what a reproduction makes first: Figures 1–4 with Tables 2 and 6 (before the ε sweep)
CORE = ("figure1", "figure2", "figure3", "figure4", "table2", "table6")
