"""Figure 3: the perturbation strength gap G_A→B per epoch (Eq. 3): (a) FGSM, FGSM+ and APART
against PGD-10, (b) PGD-5 against PGD-20."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from robdrop.analysis.gap import strength_gap
from robdrop.study.paper_values import display_name
from robdrop.study.study import RunSpec, Study
from robdrop.study.style import apply_style, collapse_mark, mean_and_seeds
from robdrop.study.target import PaperFigure, holds

# (generator A, attack B, panel)
GAPS = (
    ("fgsm", "pgd10", "a"),
    ("fgsm+", "pgd10", "a"),
    ("apart", "pgd10", "a"),
    ("pgd5", "pgd20", "b"),
)


def pair(source: str, to: str) -> str:
    return f"G_{display_name(source)}→{display_name(to)}"


class Figure3(PaperFigure):
    name = "figure3"

    def runs(self, study: Study) -> list[RunSpec]:
        return [spec for source, _, _ in GAPS for spec in study.specs(source)]

    def frame(self, study: Study) -> pd.DataFrame:
        """panel, pair, train_seed, epoch, gap (nats)."""
        # FGSM's PGD-20 curves first (the collapse marks need them), so its gaps read their
        # PGD-10 losses off them, whichever figure a launcher makes first
        study.fgsm_collapses()
        frames = []
        for source, to, panel in GAPS:
            for seed in study.seeds_for(source):
                table = strength_gap(
                    study.run(source, seed),
                    to,
                    n=study.n,
                    seed=study.seed,
                    device=study.device,
                    data_dir=study.data_dir,
                )
                frames.append(table.assign(panel=panel, pair=pair(source, to), train_seed=seed))
        columns = ["panel", "pair", "train_seed", "epoch", "gap"]
        return pd.concat(frames, ignore_index=True)[columns]

    def panels(self, study: Study, frame: pd.DataFrame) -> dict[str, Figure]:
        return {self.name: draw(frame, study.fgsm_collapses())}

    def claims(self, study: Study) -> list[dict[str, Any]]:
        """C3b of docs/faithful_search.md, per seed where FGSM collapsed for good at c: the
        median of G_FGSM→PGD-10 over epochs i ≥ c is at least twice its median before c."""
        collapses = {s: c for s, c in study.fgsm_collapses().items() if c is not None}
        if not collapses:
            return []
        frame = self.frame(study)
        gaps = frame[frame["pair"] == pair("fgsm", "pgd10")]
        measured, held = [], 0
        for seed, collapse in collapses.items():
            gap = gaps[gaps["train_seed"] == seed].set_index("epoch")["gap"]
            before, after = gap.loc[: collapse - 1].median(), gap.loc[collapse:].median()
            held += bool(after >= 2 * before)
            measured.append(f"seed {seed}: median {before:.3f} before → {after:.3f} after")
        return [
            {
                "claim": "after FGSM's collapse G_FGSM→PGD-10 at least doubles (median after "
                "vs median before)",
                "measured": f"{held}/{len(collapses)} collapsing seeds; " + "; ".join(measured),
                "holds": holds(held == len(collapses), held, len(collapses)),
            }
        ]


def draw(frame: pd.DataFrame, collapses: dict[int, int | None] | None = None) -> Figure:
    """The strength gap per epoch: (a) single-step generators → PGD-10, (b) PGD-5 → PGD-20; the
    mean over training seeds with a band of ± one standard deviation, each seed a thin line."""
    apply_style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, panel in zip(axes, ("a", "b"), strict=True):
        part = frame[frame["panel"] == panel]
        mean_and_seeds(part, x="epoch", y="gap", hue="pair", ax=ax)
        ax.set(xlabel="epoch", ylabel="strength gap G (cross-entropy, nats)", title=f"({panel})")
        if panel == "a":
            collapse_mark(ax, collapses or {}, int(part["epoch"].max()))
        ax.legend(fontsize=7)
    fig.suptitle("Figure 3: perturbation strength gap")
    fig.tight_layout()
    return fig
