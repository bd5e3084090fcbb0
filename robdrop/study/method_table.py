"""The shape of Tables 2–6: one row per method, its last epoch's accuracy under a few attacks
(mean ± standard deviation over the training seeds, and a 95 % interval over the test images)
and its training time, beside the paper's rows (each labelled in `source`). A table whose runs
do not exist here (Tables 3–5 in a CIFAR-10 study) holds the paper's rows only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from robdrop.analysis.sanity import OK, SANITY_ATTACKS, sanity_table
from robdrop.analysis.stats import wilson_interval
from robdrop.study.paper_values import paper_table
from robdrop.study.study import (
    AUTOATTACK_DEFAULT,
    LATER_METHODS,
    TABLE_PRESET,
    RunSpec,
    Study,
    lasting_collapse,
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
        return [spec for m in self.row_methods(study) for spec in study.specs(m, self.preset)]

    def runs(self, study: Study) -> list[RunSpec]:
        """Trained only where this study's preset fills the table."""
        return self.specs(study) if self.name in study.paper_scale_tables else []

    def table_caption(self, study: Study) -> str:
        """The caption, naming our rows' AutoAttack where it is a subset of the attacks or of
        the test images (on `mini`)."""
        if not (self.has_autoattack and study.autoattack):
            return self.caption
        notes = []
        if study.autoattack_spec != AUTOATTACK_DEFAULT:
            notes.append(f"{study.autoattack_spec}, {SUBSET_NOTE}")
        if study.autoattack_n != study.n:
            of = f" of the {study.n:,}" if study.n else ""  # n None: the whole test set
            notes.append(f"on {study.autoattack_n:,}{of} test images")
        return f"{self.caption} (AutoAttack: {'; '.join(notes)})" if notes else self.caption

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
        """Our rows (last epoch, over seeds) and the paper's, with a `source` column."""
        paper = paper_table(self.name)
        if self.has_autoattack:
            paper = paper.assign(**{AUTOATTACK: np.nan, SANITY: np.nan})
        try:
            runs = [(spec, study.open(spec)) for spec in self.specs(study)]
        except ValueError:
            if self.name in study.paper_scale_tables:
                raise
            return paper
        seeds = pd.DataFrame([self.seed_row(study, spec, run) for spec, run in runs])
        rename = {study.autoattack_spec: AUTOATTACK}
        ours = aggregate(seeds, [rename.get(a, a) for a in self.evaluated_attacks(study)])
        ours = ours.assign(source=f"robdrop {runs[0][0].config.preset}")
        return pd.concat([ours, paper], ignore_index=True)

    def seed_row(self, study: Study, spec: RunSpec, run: Run) -> dict[str, Any]:
        """One run's row: accuracy at the last epoch, time, its lasting collapse on the quick
        check (no extra evaluation) and the number of test images (AutoAttack's apart)."""
        aa = study.autoattack_spec
        attacks = [a for a in self.evaluated_attacks(study) if a != aa]
        table = study.evaluate(run, tuple(attacks), "last")
        sanity_input, aa_images = table, {}
        if self.has_autoattack and study.autoattack:
            # the study's AutoAttack fills the AutoAttack column; its sanity check compares it
            # with PGD-20 on the same (first autoattack_n) test images
            paired = study.evaluate(run, (aa, "pgd20"), "last", images=study.autoattack_n)
            sanity_input = pd.concat([table[table["attack"] != "pgd20"], paired])
            table = pd.concat([table, paired[paired["attack"] == aa]])
            aa_images = {f"n_{AUTOATTACK}": int(paired["n"].iloc[0])}
        acc = table.set_index("attack")["accuracy"].rename({aa: AUTOATTACK})
        metrics = run.metrics()
        seconds = metrics["seconds"]
        timing = (
            {"hours": seconds.sum() / 3600} if self.total_hours else {"seconds": seconds.mean()}
        )
        quick = metrics.set_index("epoch").get(f"test_{run.config.eval_attack}_acc")
        collapse = lasting_collapse(quick) if quick is not None else None
        row = {
            "method": spec.config.method_key,
            "train_seed": spec.config.seed,
            **acc.to_dict(),
            **timing,
            "collapse_epoch": collapse,
            "n": int(table["n"].iloc[0]),
            **aa_images,
        }
        if self.has_autoattack:
            row[SANITY] = sanity_table(sanity_input)["sanity"].item()
        return row


def aggregate(seeds: pd.DataFrame, accuracies: list[str]) -> pd.DataFrame:
    """One row per method from its seeds' rows: each accuracy's mean over seeds (%), its
    standard deviation over seeds and the 95 % Wilson interval of the mean over the test images
    (`n`, or `n_<column>` where a column had its own, as AutoAttack may),
    the mean time, in how many seeds it collapsed for good (with the epochs), and the sanity
    flags of the seeds that raised any."""
    rows = []
    for method, group in seeds.groupby("method", sort=False):
        row: dict[str, Any] = {"method": method, "seeds": len(group)}
        for column in accuracies:
            mean = group[column].mean()
            images = group[f"n_{column}"] if f"n_{column}" in group else group["n"]
            low, high = wilson_interval(mean, int(images.iloc[0]))
            row |= {
                column: 100 * mean,
                f"{column}_std": 100 * group[column].std() if len(group) > 1 else np.nan,
                f"{column}_low": 100 * low,
                f"{column}_high": 100 * high,
            }
        for timing in ("seconds", "hours"):
            if timing in group:
                row[timing] = group[timing].mean()
        epochs = group["collapse_epoch"].dropna().astype(int).tolist()
        row["collapse"] = f"{len(epochs)}/{len(group)}" + (
            f" (epoch {', '.join(map(str, epochs))})" if epochs else ""
        )
        if SANITY in group:
            flagged = group[group[SANITY] != OK]
            row[SANITY] = (
                "; ".join(
                    f"seed {seed}: {text}"
                    for seed, text in zip(flagged["train_seed"], flagged[SANITY], strict=True)
                )
                or OK
            )
        rows.append(row)
    return pd.DataFrame(rows)
