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
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from robdrop.study.launchers import Entry, Fleet, Launcher, failure_report
from robdrop.study.registry import CORE, TARGETS
from robdrop.study.report import summary
from robdrop.study.study import RunSpec, Study
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
    spec: RunSpec | None = None  # a training run's
    needs: tuple[str, ...] = ()  # a figure's or table's runs


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
        specs = target.runs(study)
        for spec in specs:
            if spec.name not in seen:
                seen.add(spec.name)
                train = partial(_train, study, spec.config, spec.name)
                steps.append(Step("train", spec.name, train, spec))
        kind = "figure" if isinstance(target, PaperFigure) else "table"
        needs = tuple(s.name for s in specs)
        steps.append(Step(kind, name, partial(target.write, study, out), needs=needs))
    return steps


def _train(study: Study, config: TrainConfig, name: str) -> list[Path]:
    return [ensure_trained(config, study.root, name=name, progress=True).path]


class RunsFailed(RuntimeError):
    """Runs of a reproduction under a launcher failed; the message names them and the commands
    that continue them (everything else was made)."""


class Timings:
    """timings.csv: a row per step and invocation, written after every step, so a killed
    reproduction still says where its time went."""

    def __init__(self, path: Path, write: bool) -> None:
        self.path, self.write = path, write
        earlier = pd.read_csv(path) if write and path.is_file() else pd.DataFrame()
        if len(earlier) and "invocation" not in earlier:
            earlier = earlier.assign(invocation=1)
        self.earlier = earlier
        self.invocation = int(earlier["invocation"].max()) + 1 if "invocation" in earlier else 1
        self.rows: list[dict[str, Any]] = []
        self.start = time.perf_counter()

    def add(
        self, step: Step, seconds: float, written: list[Path], ended: float | None = None
    ) -> None:
        """A step that took `seconds` and ended at `ended` (`time.perf_counter`; default now)."""
        ended = time.perf_counter() if ended is None else ended
        self.rows.append(
            {
                "invocation": self.invocation,
                "kind": step.kind,
                "name": step.name,
                "seconds": round(seconds, 1),
                "total_seconds": round(ended - self.start, 1),
                "written": " ".join(str(p) for p in written),
            }
        )
        if self.write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.history().to_csv(self.path, index=False)

    def run(self, step: Step) -> None:
        """Carry out `step` and add its row."""
        t0 = time.perf_counter()
        written = step.action()
        self.add(step, time.perf_counter() - t0, written)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def history(self) -> pd.DataFrame:
        """Every invocation's rows, this one's included."""
        return pd.concat([self.earlier, self.frame()], ignore_index=True)


def reproduce(
    study: Study,
    out: Path = Path("figures"),
    only: Sequence[str] | None = None,
    *,
    train: bool = True,
    command: Sequence[str] = (),
    launcher: Launcher | None = None,
) -> pd.DataFrame:
    """Carry out the plan with one progress bar over it; returns the timings. Under torchrun
    every process trains each run (DistributedDataParallel) and rank 0 alone draws and writes.

    `timings.csv` gets a row per step and invocation: a restarted reproduction adds its own rows
    (`invocation` 2, 3, …) to those of the killed one, so the summary's wall times add up the
    time actually spent. With `train=False` (`robdrop figures`) only figures and tables are
    made, from runs that must already exist, and the timings file is left as it is. When the
    plan holds every core target, `summary.md` checks the paper's claims at the end.

    With a `launcher` the runs train as jobs (`robdrop.study.launchers`) and each figure or
    table is made as soon as its runs are done; a failed run does not stop the others, and
    RunsFailed names it (and `summary.md` lists it) once everything else is made.
    """
    steps = plan(study, only, out)
    core = _core_steps(steps)
    planned = [s.name for s in steps if s.kind == "train"]
    steps = [s for s in steps if train or s.kind != "train"]
    process = distributed.from_environment()
    if train and process.main:
        study.record()  # the seeds, for `robdrop figures` and the notebooks
    if launcher is not None and process.distributed:
        raise ValueError("--launcher local or slurm starts its own jobs: run it without torchrun")
    if not process.main:  # under torchrun the others only train
        for step in steps:
            if step.kind == "train":
                step.action()
        return pd.DataFrame()
    timings = Timings(out / "timings.csv", write=train)
    runs = [s for s in steps if s.kind == "train"]
    if launcher is None or not runs:
        bar = tqdm(steps, desc=f"reproduce {study.preset}", unit="step")
        for step in bar:
            bar.set_postfix_str(f"{step.kind} {step.name}")
            timings.run(step)
        failed: list[Entry] = []
    else:
        failed = _launch(study, steps, launcher, timings)
    targets = targets_for(study, only)
    wanted = CORE if study.draws_figures else study.paper_scale_tables
    report = failure_report(failed, command) if failed else ""
    if all(t in targets for t in wanted) and not failed:
        path = out / "timings.csv"
        history = pd.read_csv(path) if path.is_file() else timings.frame()
        (out / "summary.md").write_text(summary(study, history, command, core, planned))
    elif failed:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.md").write_text(f"# Reproduction summary ({study.preset})\n\n{report}")
    if failed:
        raise RunsFailed(report)
    return timings.frame()


def _launch(study: Study, steps: list[Step], launcher: Launcher, timings: Timings) -> list[Entry]:
    """The runs as jobs of `launcher`; each figure and table as soon as its runs are done (one
    whose runs failed is left out). The failed runs.

    The runs done are added to timings.csv before each figure or table and at the end, so a
    reproduction killed on the way still says where the time of its finished runs went."""
    runs = [s for s in steps if s.spec is not None]
    recorded: set[str] = set()

    def record_done() -> None:
        for step in runs:
            entry = fleet.entries[step.name]
            if entry.status == "done" and step.name not in recorded:
                recorded.add(step.name)
                timings.add(step, entry.seconds, [study.root / step.name], entry.ended)

    with Fleet(launcher, study.root, [s.spec for s in runs]) as fleet:
        for step in (s for s in steps if s.kind != "train"):
            if fleet.wait(step.needs):
                tqdm.write(f"[{step.name}] left out: a run it needs failed")
                continue
            record_done()
            tqdm.write(f"[{step.name}] its runs are done: making it")
            with fleet.analysing():
                timings.run(step)
    record_done()
    return fleet.failed


def _core_steps(steps: list[Step]) -> list[str]:
    """The names of the steps up to the last core target (the ones Figures 1–4 and Tables 2
    and 6 need), in plan order."""
    names = [s.name for s in steps]
    last = max((names.index(t) for t in CORE if t in names), default=-1)
    return names[: last + 1]
