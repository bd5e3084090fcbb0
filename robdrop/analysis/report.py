"""The reproduction's own summary: the paper's claims checked against this study's frames.

Each check states the claim, the number measured here and whether it holds, so
`figures/summary.md` says plainly what reproduces at this scale and what does not.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from robdrop.analysis.paper_values import display_name
from robdrop.analysis.study import Study, collapse_epoch
from robdrop.analysis.tables import presentable

NO_COLLAPSE_POINTS = 3.0  # "no collapse": the last epoch within 3 points of the best


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def claims(study: Study) -> pd.DataFrame:
    """One row per claim of the paper (issue 6's list): measured value and whether it holds."""
    rows = []
    fgsm = 100 * study.robust_curve("fgsm")
    collapse = collapse_epoch(fgsm)
    loss = study.run("fgsm").metrics().set_index("epoch")["train_loss"]
    rows.append(
        {
            "claim": "FGSM's PGD-20 accuracy collapses at some epoch",
            "measured": f"best {fgsm.max():.1f} % (epoch {fgsm.idxmax()}), "
            f"last {fgsm.iloc[-1]:.1f} %"
            + (f", collapse at epoch {collapse}" if collapse else ", no epoch below half the best"),
            "holds": _yes(collapse is not None),
        }
    )
    if collapse is not None:
        after = loss.loc[collapse:]
        rows.append(
            {
                "claim": "…while its training loss keeps falling",
                "measured": f"loss {after.iloc[0]:.3f} at epoch {collapse} → {after.iloc[-1]:.3f}",
                "holds": _yes(bool(after.iloc[-1] < after.iloc[0])),
            }
        )
        gaps = study.figure3().pivot(index="epoch", columns="pair", values="gap")
        gap, apart = gaps["G_FGSM→PGD-10"], gaps["G_APART→PGD-10"]
        before = gap.loc[collapse - 1]
        rows.append(
            {
                "claim": "at that epoch G_FGSM→PGD-10 jumps (and stays large)",
                "measured": f"{before:.3f} at epoch {collapse - 1} → {gap.loc[collapse]:.3f} at "
                f"epoch {collapse}, {gap.iloc[-1]:.3f} at the end (G_APART→PGD-10 "
                f"{apart.iloc[-1]:.3f})",
                "holds": _yes(bool(gap.loc[collapse] > 1.5 * before and gap.iloc[-1] > before)),
            }
        )
        cross = study.figure1b().pivot(index="epoch", columns="series", values="accuracy")
        fgsm_acc = cross["Acc(θ_PGD-10, f_FGSM(θ_FGSM^(i)))"]
        random = cross["Acc(θ_PGD-10, f_Random)"].iloc[0]
        late = fgsm_acc.loc[collapse:]
        rows.append(
            {
                "claim": "…and Acc(θ_PGD-10, f_FGSM) rises to the random-noise level",
                "measured": f"lowest {fgsm_acc.min():.1f} % (epoch {fgsm_acc.idxmin()}), "
                f"up to {late.max():.1f} % from epoch {collapse}; random noise {random:.1f} %",
                "holds": _yes(bool(late.max() >= random - 2.0)),
            }
        )
    for method in ("apart", "pgd10"):
        curve = 100 * study.robust_curve(method)
        drop = curve.max() - curve.iloc[-1]
        rows.append(
            {
                "claim": f"{display_name(method)} does not collapse (last within "
                f"{NO_COLLAPSE_POINTS:g} points of best)",
                "measured": f"best {curve.max():.1f} % (epoch {curve.idxmax()}), "
                f"last {curve.iloc[-1]:.1f} %",
                "holds": _yes(bool(drop <= NO_COLLAPSE_POINTS)),
            }
        )
    seconds = {m: study.run(m).metrics()["seconds"].mean() for m in ("apart", "pgd10", "fgsm")}
    ratio, over_fgsm = seconds["apart"] / seconds["pgd10"], seconds["apart"] / seconds["fgsm"]
    rows.append(
        {
            "claim": "APART costs ≤ 1/4 of PGD-10 per epoch",
            "measured": f"{seconds['apart']:.1f} s vs {seconds['pgd10']:.1f} s = {ratio:.2f} "
            f"(FGSM {seconds['fgsm']:.1f} s: APART = {over_fgsm:.2f} × FGSM)",
            "holds": _yes(bool(ratio <= 0.25)),
        }
    )
    return pd.DataFrame(rows)


def hardware() -> str:
    """What a number was measured on, in one line: CPU model, cores, threads, GPU, versions."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def summary(
    study: Study, timings: pd.DataFrame, command: Sequence[str], core: Sequence[str]
) -> str:
    """Markdown: command, hardware, wall times, the claims checked, our tables and the paper's.

    `timings` holds every invocation's step times (timings.csv); `core` names the steps of
    Figures 1–4 and Tables 2 and 6.
    """
    invocations = timings.groupby("invocation")["seconds"].sum() if len(timings) else []
    lines = [
        f"# Reproduction summary ({study.preset})",
        "",
        f"- command: `{' '.join(command)}`",
        f"- hardware: {hardware()}",
        f"- wall time: {timings['seconds'].sum() / 60:.1f} min"
        + (
            f" over {len(invocations)} invocations ("
            + ", ".join(f"{s / 60:.1f}" for s in invocations)
            + " min; a restart reuses what was done)"
            if len(invocations) > 1
            else ""
        ),
    ]
    if core:
        seconds = timings.loc[timings["name"].isin(core), "seconds"].sum()
        lines.append(
            f"- of which Figures 1–4 with Tables 2 and 6 (done first): {seconds / 60:.1f} min"
        )
    lines += [
        f"- evaluations: {study.n or 'all'} test images drawn with seed {study.seed}",
        "",
        "Step times are in `timings.csv`, one row per step and invocation.",
        "",
    ]
    if study.has_figures():
        lines += ["## The paper's claims at this scale", "", claims(study).to_markdown(index=False)]
    for name in study.own_tables():
        lines += ["", f"## {name.replace('table', 'Table ')}", ""]
        lines.append(presentable(study.table(name), name).to_markdown(index=False))
    return "\n".join(lines) + "\n"
