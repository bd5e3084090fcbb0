"""The shape of Tables 2–6: one row per method, its last epoch's accuracy under a few attacks
and its training time, beside the paper's rows (each labelled in `source`). A table whose runs
do not exist here (Tables 3–5 in a CIFAR-10 study) holds the paper's rows only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from robdrop.analysis.sanity import SANITY_ATTACKS, sanity_table
from robdrop.study.paper_values import paper_table
from robdrop.study.study import (
    AUTOATTACK_DEFAULT,
    LATER_METHODS,
    TABLE_PRESET,
    RunSpec,
    Study,
    collapse_epoch,
)
from robdrop.study.tables import write_table
from robdrop.study.target import PaperTable
from robdrop.training.runs import Run

ATTACKS = ("clean", "pgd20", "cw20", "gauss")
AUTOATTACK = "autoattack"
SANITY = "sanity"  # the column of the evaluation sanity checks (Tables 2–4)
SUBSET_NOTE = "the authors' APGD-CE and APGD-T only, 100 iterations each"


class MethodTable(PaperTable):
    """Subclasses name the methods, the attacks and whether the table has AutoAttack's column
    (empty for the paper's rows, which report none, and for ours with `autoattack` off); a table
    with that column also checks each of our rows (`analysis/sanity.py`, the `sanity` column)."""

    methods: ClassVar[tuple[str, ...]]
    attacks: ClassVar[tuple[str, ...]] = ATTACKS
    has_autoattack: ClassVar[bool] = False
    total_hours: ClassVar[bool] = False  # the time column: total hours instead of s/epoch

    @property
    def preset(self) -> str | None:
        """The preset whose runs fill this table (None: the study's own)."""
        return TABLE_PRESET.get(self.name)

    def row_methods(self, study: Study) -> tuple[str, ...]:
        later = self.has_autoattack and study.later_methods  # Tables 2–4 take the later methods
        return (*self.methods, *LATER_METHODS) if later else self.methods

    def specs(self, study: Study) -> list[RunSpec]:
        return [study.spec(m, self.preset) for m in self.row_methods(study)]

    def runs(self, study: Study) -> list[RunSpec]:
        """Trained only where this study's preset fills the table."""
        return self.specs(study) if self.name in study.paper_scale_tables else []

    def table_caption(self, study: Study) -> str:
        """The caption, naming our rows' AutoAttack where it is a subset (on `mini`)."""
        if self.has_autoattack and study.autoattack and study.autoattack_spec != AUTOATTACK_DEFAULT:
            return f"{self.caption} (AutoAttack: {study.autoattack_spec}, {SUBSET_NOTE})"
        return self.caption

    def write(self, study: Study, out: Path) -> list[Path]:
        frame = self.frame(study)
        return write_table(frame, out, self.name, self.table_caption(study), self.row_names)

    def evaluated_attacks(self, study: Study) -> tuple[str, ...]:
        """The table's attacks, the study's AutoAttack and what the sanity checks need."""
        if not self.has_autoattack:
            return self.attacks
        with_aa = (study.autoattack_spec,) if study.autoattack else ()
        return (*self.attacks, *with_aa, *SANITY_ATTACKS)

    def frame(self, study: Study) -> pd.DataFrame:
        """Our rows (last epoch) and the paper's, with a `source` column."""
        paper = paper_table(self.name)
        if self.has_autoattack:
            paper = paper.assign(**{AUTOATTACK: np.nan, SANITY: np.nan})
        try:
            runs = [(spec, study.open(spec)) for spec in self.specs(study)]
        except ValueError:
            if self.name in study.paper_scale_tables:
                raise
            return paper
        rows = [self.row(study, spec, run) for spec, run in runs]
        ours = pd.DataFrame(rows).assign(source=f"robdrop {runs[0][0].config.preset}")
        return pd.concat([ours, paper], ignore_index=True)

    def row(self, study: Study, spec: RunSpec, run: Run) -> dict[str, Any]:
        """One method's row: accuracy (%) at the last epoch, time, collapse on the quick check."""
        attacks = self.evaluated_attacks(study)
        evaluated = study.evaluate(run, attacks, "last")
        # the study's AutoAttack (a subset of it on mini) fills the AutoAttack column
        acc = evaluated.set_index("attack")["accuracy"].rename({study.autoattack_spec: AUTOATTACK})
        metrics = run.metrics()
        seconds = metrics["seconds"]
        timing = (
            {"hours": seconds.sum() / 3600} if self.total_hours else {"seconds": seconds.mean()}
        )
        # collapse on the trainer's per-epoch quick check (no extra evaluation)
        quick = metrics.set_index("epoch").get(f"test_{run.config.eval_attack}_acc")
        collapse = collapse_epoch(quick) if quick is not None else None
        row = {"method": spec.config.method_key, **(100 * acc).to_dict(), **timing}
        row["collapse"] = f"epoch {collapse}" if collapse else "no"
        if self.has_autoattack:
            row[SANITY] = sanity_table(evaluated)["sanity"].item()
        return row
