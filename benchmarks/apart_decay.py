"""Issue 15: APART under the released defaults on `mini`, with its step sizes decayed as the
released code decayed them (`released_decay=true`, λ ≈ 1,200 in effect, the default) and as the
paper states (`released_decay=false`, λ = 400): does either collapse over 30 epochs, and how do
Figure 4's trajectories differ?

    python benchmarks/apart_decay.py --data-dir ../shared/data --out RUNS --epochs 30

Trains (or reuses, or resumes) both runs with a checkpoint per epoch and PGD-20 on the preset's
fixed test subset after every epoch, two jobs at a time with one thread each; writes
docs/results/apart_decay.md and .png. The cost against FGSM is `benchmarks/epoch_cost.py`'s
(both methods timed in one process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from common import RESULTS, write_result

from robdrop.analysis.trajectories import step_size_trajectories
from robdrop.study.study import lasting_collapse
from robdrop.training.best import best_epoch
from robdrop.training.runs import Run

COLUMN = "test_pgd20_acc"
DECAYS = ("true", "false")


def train(data_dir: str, out: Path, decay: str, epochs: int, seed: int) -> Run:
    """One APART run of `mini` with the given step-size decay, one thread, resumable."""
    name = f"apart-decay-{decay}-{epochs}ep-seed{seed}"
    command = [
        sys.executable, "-m", "robdrop", "train", "--method", "apart", "--preset", "mini",
        "--epochs", str(epochs), "--seed", str(seed), "-o", f"released_decay={decay}",
        "--eval-attack", "pgd20", "--save-every-epoch", "--data-dir", data_dir,
        "--out", str(out), "--name", name, "--resume", "--quiet",
    ]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.log").open("a") as log:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return Run(out / name)


def summary_row(decay: str, run: Run) -> dict:
    """Best and last PGD-20, the lasting collapse if any, and the training seconds."""
    metrics = run.metrics().set_index("epoch")
    curve = metrics[COLUMN]
    collapse = lasting_collapse(curve)
    best = best_epoch(curve)
    return {
        "released_decay": decay,
        "best PGD-20 % (epoch)": f"{100 * curve[best]:.1f} ({best})",
        "last PGD-20 %": 100 * curve.iloc[-1],
        "last − best (points)": 100 * (curve.iloc[-1] - curve[best]),
        "within 3 points": bool(curve[best] - curve.iloc[-1] <= 0.03),
        "lasting collapse": collapse if collapse is not None else "none",
        "last clean %": 100 * metrics["test_clean_acc"].iloc[-1],
        "training s/epoch": metrics["seconds"].mean(),
    }


@click.command()
@click.option("--data-dir", default="../shared/data")
@click.option("--out", type=click.Path(path_type=Path), default=Path("checkpoints/apart-decay"))
@click.option("--epochs", default=30)
@click.option("--seed", default=1, help="The mini preset's seed.")
def main(data_dir: str, out: Path, epochs: int, seed: int) -> None:
    with ThreadPoolExecutor(len(DECAYS)) as pool:
        trained = pool.map(lambda d: train(data_dir, out, d, epochs, seed), DECAYS)
        runs = dict(zip(DECAYS, trained, strict=True))
    table = pd.DataFrame([summary_row(d, run) for d, run in runs.items()])
    steps = pd.concat(
        [step_size_trajectories(run).assign(released_decay=d) for d, run in runs.items()],
        ignore_index=True,
    )
    curves = pd.concat(
        [run.metrics().assign(released_decay=d) for d, run in runs.items()], ignore_index=True
    )
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, decay in zip(axes[:2], DECAYS, strict=True):
        part = steps[steps["released_decay"] == decay]
        sns.lineplot(part.assign(value=255 * part["value"]), x="epoch", y="value", hue="step",
                     marker="o", ax=ax, legend=decay == "true")  # fmt: skip
        ax.set(yscale="log", ylabel="step size (/255)", title=f"released_decay={decay}")
    sns.lineplot(curves.assign(acc=100 * curves[COLUMN]), x="epoch", y="acc",
                 hue="released_decay", marker="o", ax=axes[2])  # fmt: skip
    axes[2].set(ylabel="PGD-20 test accuracy (%)", title="robustness")
    fig.tight_layout()
    fig.savefig(RESULTS / "apart_decay.png", dpi=110)
    plt.close(fig)
    wide = steps.pivot_table(index="epoch", columns=["released_decay", "step"], values="value")
    n = runs["true"].config.eval_size
    shown = 255 * wide.loc[[e for e in (0, 10, 20, epochs) if e in wide.index]]
    body = (
        f"APART on `mini`, {epochs} epochs, seed {seed}, the released recipe; PGD-20 (ε = 8/255, "
        f"step 2/255, random start) on the first {n} test images after every epoch.\n\n"
        f"{table.round(2).to_markdown(index=False)}\n\n"
        "![Figure 4 under both decays](apart_decay.png)\n\n"
        f"Step sizes (/255) at epochs 0, 10, 20 and {epochs}:\n\n"
        f"{shown.round(3).T.to_markdown()}\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result('apart_decay', body)}")


if __name__ == "__main__":
    main()
