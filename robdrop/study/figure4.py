"""Figure 4: APART's learned step sizes per epoch, from epoch 0 (their initial values)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from robdrop.analysis.trajectories import step_size_trajectories
from robdrop.study.study import RunSpec, Study
from robdrop.study.style import apply_style
from robdrop.study.target import PaperFigure


class Figure4(PaperFigure):
    name = "figure4"

    def runs(self, study: Study) -> list[RunSpec]:
        return study.specs("apart")

    def frame(self, study: Study) -> pd.DataFrame:
        """train_seed, epoch, step, value: α_ω, the input step and one per block
        (image/feature units), per training seed."""
        frames = [
            step_size_trajectories(study.run("apart", seed)).assign(train_seed=seed)
            for seed in study.seeds_for("apart")
        ]
        return pd.concat(frames, ignore_index=True)

    def panels(self, study: Study, frame: pd.DataFrame) -> dict[str, Figure]:
        return {self.name: draw(frame)}


def draw(frame: pd.DataFrame) -> Figure:
    """APART's learned step sizes per epoch, in /255 units: the mean over training seeds with a
    band of ± one standard deviation."""
    apply_style()
    scaled = frame.assign(value=255 * frame["value"])
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(scaled, x="epoch", y="value", hue="step", marker="o", errorbar="sd", ax=ax)
    ax.set(xlabel="epoch", ylabel="step size (/255)", yscale="log")
    ax.set_title("Figure 4: APART step sizes")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
