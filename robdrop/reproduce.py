"""`robdrop reproduce`: train every run the figures and tables need, then draw and write them.

The plan is ordered so that Figures 1–4 and Tables 2 and 6 are complete before the ε sweep of
Figure 5 starts; `timings.csv` records the wall time of every step and the running total, so
the cost of that first part and of the whole study are both read from one reproduction.
Killed and restarted, it redoes nothing: complete runs are reused, partial ones resumed, and
every analysis is read from its cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from robdrop import distributed
from robdrop.analysis import figures, tables
from robdrop.analysis.report import summary
from robdrop.analysis.study import FIGURES, TABLES, RunSpec, Study, collapse_epoch
from robdrop.trainer import ensure_trained

# what is drawn before the ε sweep (the "Figures 1–4 with Tables 2 and 6")
CORE = ("figure1", "figure2", "figure3", "figure4", "table2", "table6")


@dataclass
class Step:
    """One item of the plan: a training run, a figure or a table."""

    kind: str
    name: str
    action: Callable[[], list[Path]]


def targets_for(study: Study, only: Sequence[str] | None = None) -> list[str]:
    """The figures and tables a reproduction of `study.preset` makes, core ones first."""
    wanted = [*FIGURES, *TABLES] if not study.has_figures() else [*CORE, "figure5", *TABLES]
    wanted = [t for t in dict.fromkeys(wanted) if study.has_figures() or t in TABLES]
    if only:
        unknown = set(only) - set(wanted)
        if unknown:
            raise ValueError(
                f"preset {study.preset} makes no {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(wanted)}"
            )
        wanted = [t for t in wanted if t in only]
    return wanted


def _runs_of(study: Study, target: str) -> list[RunSpec]:
    """The runs a target trains here: its own tables' and figures' runs, none for the others."""
    if target in TABLES and target not in study.own_tables():
        return []
    return study.specs(target)


def plan(
    study: Study, only: Sequence[str] | None = None, out: Path = Path("figures")
) -> list[Step]:
    """Training runs, each once, each just before the first target that needs it."""
    steps: list[Step] = []
    seen: set[str] = set()
    for target in targets_for(study, only):
        for spec in _runs_of(study, target):
            if spec.name not in seen:
                seen.add(spec.name)
                steps.append(Step("train", spec.name, _trainer(study, spec)))
        kind = "figure" if target in FIGURES else "table"
        steps.append(Step(kind, target, _drawer(study, target, out)))
    return steps


def _trainer(study: Study, spec: RunSpec) -> Callable[[], list[Path]]:
    def train() -> list[Path]:
        run = ensure_trained(spec.config, study.root, name=spec.name, progress=True)
        return [run.path]

    return train


def _drawer(study: Study, target: str, out: Path) -> Callable[[], list[Path]]:
    def draw() -> list[Path]:
        if target in TABLES:
            return tables.write_table(study.table(target), out, target)
        drawn = draw_figures(study, target)
        return [path for name, fig in drawn.items() for path in figures.save_figure(fig, out, name)]

    return draw


def draw_figures(study: Study, target: str) -> dict[str, figures.Figure]:
    """The panels of figure `target` by file name (the same calls a notebook makes)."""
    if target == "figure4":
        return {target: figures.figure4(study.figure4())}
    if target == "figure5":
        return {target: figures.figure5(study.figure5())}
    collapse = collapse_epoch(study.robust_curve("fgsm"))
    if target == "figure1":
        images, deltas = study.figure1a()
        eps = study.run("fgsm").config.eps_float
        return {
            "figure1a": figures.figure1a(images, deltas, eps),
            "figure1b": figures.figure1b(study.figure1b(), collapse),
        }
    if target == "figure2":
        return {target: figures.figure2(study.figure2(), collapse)}
    if target == "figure3":
        return {target: figures.figure3(study.figure3(), collapse)}
    raise ValueError(f"unknown figure {target!r}")


def reproduce(
    study: Study,
    out: Path = Path("figures"),
    only: Sequence[str] | None = None,
    *,
    train: bool = True,
    command: Sequence[str] = (),
) -> pd.DataFrame:
    """Carry out the plan with one progress bar over it; returns the timings. Under torchrun
    every process trains each run (DistributedDataParallel) and rank 0 alone draws and writes.

    `timings.csv` gets a row per step and invocation: a restarted reproduction adds its own rows
    (`invocation` 2, 3, …) to those of the killed one, so the summary's wall times add up the
    time actually spent. With `train=False` (`robdrop figures`) only figures and tables are
    made, from runs that must already exist, and the timings file is left as it is. When the
    plan holds every core target, `summary.md` checks the paper's claims at the end.
    """
    steps = plan(study, only, out)
    core = _core_steps(steps)
    steps = [s for s in steps if train or s.kind != "train"]
    if not distributed.from_environment().main:  # under torchrun the others only train
        for step in steps:
            if step.kind == "train":
                step.action()
        return pd.DataFrame()
    path = out / "timings.csv"
    earlier = pd.read_csv(path) if train and path.is_file() else pd.DataFrame()
    if len(earlier) and "invocation" not in earlier:
        earlier = earlier.assign(invocation=1)
    invocation = int(earlier["invocation"].max()) + 1 if "invocation" in earlier else 1
    rows, start = [], time.perf_counter()
    bar = tqdm(steps, desc=f"reproduce {study.preset}", unit="step")
    for step in bar:
        bar.set_postfix_str(f"{step.kind} {step.name}")
        t0 = time.perf_counter()
        written = step.action()
        now = time.perf_counter()
        rows.append(
            {
                "invocation": invocation,
                "kind": step.kind,
                "name": step.name,
                "seconds": round(now - t0, 1),
                "total_seconds": round(now - start, 1),
                "written": " ".join(str(p) for p in written),
            }
        )
        if train:  # after every step, so a killed reproduction still says where its time went
            out.mkdir(parents=True, exist_ok=True)
            pd.concat([earlier, pd.DataFrame(rows)], ignore_index=True).to_csv(path, index=False)
    timings = pd.DataFrame(rows)
    targets = targets_for(study, only)
    if all(t in targets for t in (CORE if study.has_figures() else study.own_tables())):
        bar.set_postfix_str("summary")
        history = pd.read_csv(path) if path.is_file() else timings
        (out / "summary.md").write_text(summary(study, history, command, core))
    return timings


def _core_steps(steps: list[Step]) -> list[str]:
    """The names of the steps up to the last core target (the ones Figures 1–4 and Tables 2
    and 6 need), in plan order."""
    names = [s.name for s in steps]
    last = max((names.index(t) for t in CORE if t in names), default=-1)
    return names[: last + 1]
