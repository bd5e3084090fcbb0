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

from robdrop.analysis.sanity import AA_DISAGREEMENT, MODE_DIFFERENCE, OK
from robdrop.study.method_table import SANITY, MethodTable
from robdrop.study.paper_values import display_name
from robdrop.study.registry import CORE, TARGETS
from robdrop.study.study import Study
from robdrop.study.tables import presentable
from robdrop.training.runs import find_runs, run_costs


def claims(study: Study) -> pd.DataFrame:
    """One row per claim of the paper that the core figures and tables check: the claim, the
    number measured here and whether it holds."""
    rows = [
        row for name in CORE if TARGETS[name].applies(study) for row in TARGETS[name].claims(study)
    ]
    return pd.DataFrame(rows, columns=["claim", "measured", "holds"])


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
    study: Study,
    timings: pd.DataFrame,
    command: Sequence[str],
    core: Sequence[str],
    runs: Sequence[str] = (),
) -> str:
    """Markdown: command, hardware, wall times, the claims checked, our tables and the paper's.

    `timings` holds every invocation's step times (timings.csv); `core` names the steps of
    Figures 1–4 and Tables 2 and 6; `runs` the plan's runs, whose own records give what they
    cost wherever they were trained (timings.csv knows only the invocations that wrote it).
    """
    # wall time per invocation: when its last step ended (runs under a launcher overlap)
    invocations = timings.groupby("invocation")["total_seconds"].max() if len(timings) else []
    lines = [
        f"# Reproduction summary ({study.preset})",
        "",
        f"- command: `{' '.join(command)}`",
        f"- hardware: {hardware()}",
        f"- wall time: {sum(invocations) / 60:.1f} min"
        + (
            f" over {len(invocations)} invocations ("
            + ", ".join(f"{s / 60:.1f}" for s in invocations)
            + " min; a restart reuses what was done)"
            if len(invocations) > 1
            else ""
        ),
    ]
    if core:
        mine = timings[timings["name"].isin(core)]
        seconds = mine.groupby("invocation")["total_seconds"].max().sum() if len(mine) else 0
        lines.append(
            f"- of which Figures 1–4 with Tables 2 and 6 (done first): {seconds / 60:.1f} min"
        )
    if runs:
        planned = set(runs)
        costs = run_costs(r for r in find_runs(study.root) if r.name in planned)
        made = timings.loc[timings["kind"] != "train", "seconds"].sum() if len(timings) else 0
        train, checks = costs["train_min"].sum(), costs["eval_min"].sum()
        lines.append(
            f"- work, from the records: {len(costs)} runs, {train + checks:.1f} run-minutes "
            f"in their metrics.csv (training {train:.1f}, per-epoch quick checks {checks:.1f}), "
            f"whichever invocation trained them; figures and tables {made / 60:.1f} min over "
            "the invocations in timings.csv"
        )
    lines += [
        f"- training seeds: {study.seeds_text()}",
        f"- evaluations: {study.n or 'all'} test images drawn with seed {study.seed}"
        + (
            f" (AutoAttack on the first {study.autoattack_n} of them)"
            if study.autoattack and study.autoattack_n != study.n
            else ""
        )
        + "; accuracies are means ± standard deviations over training seeds with the 95 % "
        "(Wilson) interval over the test images in brackets",
        "",
        "Step times are in `timings.csv`, one row per step and invocation.",
        "",
    ]
    if study.draws_figures:
        lines += ["## The paper's claims at this scale", "", claims(study).to_markdown(index=False)]
    frames = {name: TARGETS[name].frame(study) for name in study.paper_scale_tables}
    for name, frame in frames.items():
        table = TARGETS[name]
        lines += ["", f"## {name.replace('table', 'Table ')}", ""]
        if isinstance(table, MethodTable) and table.table_caption(study) != table.caption:
            lines += [table.table_caption(study), ""]
        lines.append(presentable(frame, table.row_names).to_markdown(index=False))
    lines += sanity_section(frames)
    return "\n".join(lines) + "\n"


def sanity_section(frames: dict[str, pd.DataFrame]) -> list[str]:
    """Markdown lines: per table with a sanity column, our rows whose evaluation looks wrong."""
    checked = {name: f for name, f in frames.items() if SANITY in f and f[SANITY].notna().any()}
    if not checked:
        return []
    lines = [
        "",
        "## Evaluation sanity",
        "",
        f"Each of our rows is checked for PGD-20 and AutoAttack differing by more than "
        f"{AA_DISAGREEMENT:g} points, accuracy under random noise below PGD-20's (a broken "
        f"attack), clean accuracy in train and eval mode differing by more than "
        f"{MODE_DIFFERENCE:g} points, and AutoAttack's own flags.",
        "",
    ]
    for name, frame in checked.items():
        ours = frame[frame[SANITY].notna()]
        flagged = ours[ours[SANITY] != OK]
        title = name.replace("table", "Table ")
        if "autoattack" not in ours or ours["autoattack"].isna().all():
            title += " (AutoAttack not evaluated: its checks skipped)"
        if flagged.empty:
            lines.append(f"- {title}: all {len(ours)} rows pass.")
            continue
        lines.append(f"- {title}: {len(flagged)} of {len(ours)} rows flagged:")
        lines += [f"  - {display_name(r.method)}: {r.sanity}" for r in flagged.itertuples()]
    return lines
