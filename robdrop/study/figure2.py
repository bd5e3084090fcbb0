"""Figure 2: the training objective keeps falling while robustness drops: training loss and
PGD-20 test accuracy per epoch of FGSM, PGD-10 and APART."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robdrop.study.paper_values import display_name, paper_value
from robdrop.study.study import RunSpec, Study
from robdrop.study.style import apply_style, collapse_mark, mean_and_seeds
from robdrop.study.target import PaperFigure, holds
from robdrop.training.best import best_epoch

LOSS = "training objective (cross-entropy)"
ROBUST = "PGD-20 test accuracy (%)"
NO_COLLAPSE_POINTS = 3.0  # "no collapse": the last epoch within 3 points of the best


def tidy(series: pd.Series, method: str, quantity: str) -> pd.DataFrame:
    """(epoch, method, quantity, value) rows of a per-epoch series."""
    return pd.DataFrame(
        {"epoch": series.index, "method": method, "quantity": quantity, "value": series.values}
    )


class Figure2(PaperFigure):
    name = "figure2"
    methods = ("fgsm", "pgd10", "apart")

    def runs(self, study: Study) -> list[RunSpec]:
        return [spec for m in self.methods for spec in study.specs(m)]

    def frame(self, study: Study) -> pd.DataFrame:
        """train_seed, epoch, method, quantity, value: training loss and PGD-20 accuracy (%)."""
        rows = []
        for method in self.methods:
            for seed in study.seeds_for(method):
                loss = study.run(method, seed).metrics().set_index("epoch")["train_loss"]
                robust = 100 * study.robust_curve(method, seed)
                for part in (tidy(loss, method, LOSS), tidy(robust, method, ROBUST)):
                    rows.append(part.assign(train_seed=seed))
        return pd.concat(rows, ignore_index=True)

    def panels(self, study: Study, frame: pd.DataFrame) -> dict[str, Figure]:
        return {self.name: draw(frame, study.fgsm_collapses())}

    def claims(self, study: Study) -> list[dict[str, Any]]:
        """FGSM collapses for good in every seed (C1 without its robustness bar, which needs
        PGD-10) while its loss keeps falling; APART and PGD-10 end within 3 points of their best
        in every seed (C2)."""
        collapses = study.fgsm_collapses()
        collapsed = {s: c for s, c in collapses.items() if c is not None}
        described = []
        for seed, collapse in collapses.items():
            curve = 100 * study.robust_curve("fgsm", seed)
            best = best_epoch(curve)
            described.append(
                f"seed {seed}: best {curve[best]:.1f} % (epoch {best}), last "
                f"{curve.iloc[-1]:.1f} %, " + (f"collapse at {collapse}" if collapse else "none")
            )
        rows = [
            {
                "claim": "FGSM's PGD-20 accuracy collapses for good (below a quarter of its best "
                "from some epoch to the last)",
                "measured": "; ".join(described),
                "holds": holds(len(collapsed) == len(collapses), len(collapsed), len(collapses)),
            }
        ]
        if collapsed:
            falling = []
            for seed, collapse in collapsed.items():
                loss = study.run("fgsm", seed).metrics().set_index("epoch")["train_loss"]
                after = loss.loc[collapse:]
                falling.append(bool(after.iloc[-1] < after.iloc[0]))
            rows.append(
                {
                    "claim": "…while its training loss keeps falling",
                    "measured": f"loss lower at the last epoch than at the collapse in "
                    f"{sum(falling)}/{len(falling)} collapsing seeds",
                    "holds": holds(all(falling), sum(falling), len(falling)),
                }
            )
        for method in ("apart", "pgd10"):
            drops = {}
            for seed in study.seeds_for(method):
                curve = 100 * study.robust_curve(method, seed)
                drops[seed] = curve.max() - curve.iloc[-1]
            kept = sum(d <= NO_COLLAPSE_POINTS for d in drops.values())
            rows.append(
                {
                    "claim": f"{display_name(method)} does not collapse (last within "
                    f"{NO_COLLAPSE_POINTS:g} points of best)",
                    "measured": "; ".join(
                        f"seed {s}: last − best {-d:.1f}" for s, d in drops.items()
                    ),
                    "holds": holds(kept == len(drops), kept, len(drops)),
                }
            )
        return rows


def draw(frame: pd.DataFrame, collapses: dict[int, int | None] | None = None) -> Figure:
    """Training objective and PGD-20 test accuracy per epoch, one panel each: the mean over
    training seeds with a band of ± one standard deviation, each seed a thin line."""
    apply_style()
    quantities = list(dict.fromkeys(frame["quantity"]))
    fig, axes = plt.subplots(1, len(quantities), figsize=(5.5 * len(quantities), 4))
    frame = frame.assign(label=frame["method"].map(display_name))
    for ax, quantity in zip(np.atleast_1d(axes), quantities, strict=True):
        part = frame[frame["quantity"] == quantity]
        mean_and_seeds(part, x="epoch", y="value", hue="label", ax=ax)
        ax.set(xlabel="epoch", ylabel=quantity, title=quantity)
        if "accuracy" in quantity:
            collapse_mark(ax, collapses or {}, int(part["epoch"].max()))
            for method in part["method"].unique():
                ref = paper_value("table2", method, "pgd20")
                if ref is not None:
                    ax.axhline(ref, ls="--", lw=0.8, color="grey")
                    label = f"paper {display_name(method)}, final"
                    ax.annotate(label, (part["epoch"].min(), ref), fontsize=7)
        ax.legend(fontsize=7)
    fig.suptitle("Figure 2: training objective and robustness per epoch")
    fig.tight_layout()
    return fig
