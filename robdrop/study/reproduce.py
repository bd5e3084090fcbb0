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
from functools import partial
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from robdrop.study.registry import CORE, TARGETS
from robdrop.study.report import summary
from robdrop.study.study import Study
from robdrop.study.target import PaperFigure
from robdrop.training import distributed
from robdrop.training.config import TrainConfig
from robdrop.training.trainer import ensure_trained


@dataclass
class Step:
    """One item of the plan: a training run, a figure or a table."""

    kind: str
    name: str
    action: Callable[[], list[Path]]


def targets_for(study: Study, only: Sequence[str] | None = None) -> list[str]:
    """The figures and tables a reproduction of `study.preset` makes, core ones first."""
    wanted = [name for name, target in TARGETS.items() if target.applies(study)]
    if study.draws_figures:
        wanted = [*CORE, *(name for name in wanted if name not in CORE)]
    if only:
        unknown = set(only) - set(wanted)
        if unknown:
            raise ValueError(
                f"preset {study.preset} makes no {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(wanted)}"
            )
        wanted = [t for t in wanted if t in only]
    return wanted


def plan(
    study: Study, only: Sequence[str] | None = None, out: Path = Path("figures")
) -> list[Step]:
    """Training runs, each once, each just before the first target that needs it."""
    steps: list[Step] = []
    seen: set[str] = set()
    for name in targets_for(study, only):
        target = TARGETS[name]
        for spec in target.runs(study):
            if spec.name not in seen:
                seen.add(spec.name)
                train = partial(_train, study, spec.config, spec.name)
                steps.append(Step("train", spec.name, train))
        kind = "figure" if isinstance(target, PaperFigure) else "table"
        steps.append(Step(kind, name, partial(target.write, study, out)))
    return steps


def _train(study: Study, config: TrainConfig, name: str) -> list[Path]:
    return [ensure_trained(config, study.root, name=name, progress=True).path]


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
    if train and distributed.from_environment().main:
        study.record()  # the seeds, for `robdrop figures` and the notebooks
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
    if all(t in targets for t in (CORE if study.draws_figures else study.paper_scale_tables)):
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
