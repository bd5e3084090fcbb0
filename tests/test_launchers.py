"""`robdrop reproduce --launcher`: runs as submitit jobs. A tiny study through submitit's local
executor, two jobs at a time, one stopped by SIGTERM (requeued, continued from partial.pt) and
one by SIGKILL (failed, then continued by running the command again), ends with checkpoints and
analyses equal bit for bit to those of the sequential study; the SLURM jobs carry the options."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import click
import pandas as pd
import pytest
import torch

from robdrop.analysis.common import progress
from robdrop.cli import parse_options
from robdrop.study import Study
from robdrop.study import reproduce as reproduce_module
from robdrop.study.launchers import Entry, Fleet, Launcher, train_args
from robdrop.study.reproduce import Step, Timings
from robdrop.training.config import make_config
from tests.conftest import import_benchmark
from tests.fingerprints import PORTABLE_ENV, REPO, _hash_tensors
from tests.test_reproduce import TINY

pytest.importorskip("submitit")

# Figure 5 over three FGSM runs (ε = 4, 6, 8), three tiny epochs each, its last epochs evaluated
# on 32 test images; with two jobs at a time the third waits for a free slot
SWEEP = ("--only", "figure5", "--sweep-method", "fgsm", "--sweep-eps", "4,6,8")
STOPPED, KILLED = "mini-fgsm-eps4-seed1", "mini-fgsm-eps6-seed1"


def study_args(data_dir: Path, root: Path, *extra: str) -> list[str]:
    """`robdrop reproduce` of the tiny Figure 5 under `root`."""
    # three epochs: a signal sent as epoch 1 is saved lands before the last minibatch even
    # where a tiny epoch takes a fraction of a second
    tiny = {**TINY, "epochs": 3}
    settings = [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]
    return [
        "reproduce", "--preset", "mini", *SWEEP, "--out", str(root / "runs"),
        "--figures-dir", str(root / "figures"), "--data-dir", str(data_dir), "--n", "32",
        "--no-autoattack", *settings, *extra,
    ]  # fmt: skip


def robdrop(args: list[str]) -> subprocess.Popen[str]:
    """`python -m robdrop *args` in the portable mode, so that separate processes agree bit
    for bit (tests/fingerprints.py); the jobs it starts inherit the settings."""
    env = {**os.environ, **PORTABLE_ENV, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "robdrop", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> str:
    """The output of a finished `robdrop` process, carriage returns as line ends."""
    out, _ = proc.communicate(timeout=900)
    return out.replace("\r", "\n")


def train_process(run: str) -> int | None:
    """The process id of `robdrop train … --name run`, if it is running."""
    needle = b"train\0--method", f"--name\0{run}\0".encode()
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if all(n in cmdline for n in needle):
            return int(proc.name)
    return None


def stop_in_second_epoch(runs: Path, how: dict[str, signal.Signals], deadline: float) -> None:
    """Send each run's `robdrop train` its signal as soon as its epoch 1 is saved (SIGTERM then
    lands in epoch 2, or at the latest in epoch 3's first minibatches); the run must not have
    finished."""
    waiting = dict(how)
    while waiting and time.time() < deadline:
        for run, sig in list(waiting.items()):
            pid = train_process(run)
            if pid is None or not (runs / run / "epoch-001.pt").exists():
                continue
            os.kill(pid, sig)
            del waiting[run]
            assert not (runs / run / "epoch-003.pt").exists(), "the signal came too late"
        time.sleep(0.02)
    assert not waiting, f"never saw {sorted(waiting)} train"


def saved(root: Path) -> dict[str, object]:
    """Every run's checkpoints (hashes of all their tensors), metrics and cached analyses,
    without the wall times."""
    found: dict[str, object] = {}
    for run in sorted(p for p in (root / "runs").glob("[!.]*/")):  # run folders, not study.json
        for path in sorted(run.glob("*.pt")):
            found[f"{run.name}/{path.name}"] = _hash_tensors(torch.load(path, weights_only=True))
        for path in [run / "metrics.csv", *sorted(run.glob("analysis/*/*.csv"))]:
            frame = pd.read_csv(path)
            frame = frame.drop(columns=[c for c in frame.columns if "seconds" in c])
            found[f"{run.name}/{path.parent.name}"] = frame.to_csv(index=False)
    return found


def test_train_args_make_the_planned_configuration(data_dir: Path, tmp_path: Path) -> None:
    study = Study(tmp_path, "mini", config={"data_dir": str(data_dir), **TINY})
    spec = study.spec("apart", eps255=4.0)
    args = train_args(spec, tmp_path)
    assert args[:2] == ["train", "--method"] and "--resume" in args
    sets = parse_options(tuple(args[i + 1] for i, a in enumerate(args) if a == "--set"))
    assert make_config("mini", method="apart", **sets) == spec.config


def test_slurm_jobs_carry_the_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srun = tmp_path / "bin" / "srun"  # submitit looks for srun before writing any script
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    launcher = Launcher(
        "slurm",
        partition="gpu",
        gpus_per_job=1,
        cpus_per_job=8,
        time_min=600,
        account="lab",
        sbatch={"qos": "high", "exclusive": True},
    )
    script = launcher.executor(tmp_path)._executor._make_submission_file_text("CMD", "uid")
    for line in ("partition=gpu", "gpus-per-node=1", "cpus-per-task=8", "time=600", "account=lab",
                 "qos=high", "signal=USR2@90"):  # fmt: skip
        assert f"#SBATCH --{line}\n" in script
    assert "#SBATCH --exclusive\n" in script and "export PYTHONPATH=" in script
    assert launcher.environment(0)["OMP_NUM_THREADS"] == "8"


def submitted_without_jobs(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fleet._submit replaced by one that starts no job (the run holds its slot, running); the
    names of the runs submitted, in order."""
    submitted: list[str] = []

    def submit(entry: Entry) -> None:
        entry.slot, entry.status, entry.job = fleet._free_slot(), "running", "job"
        submitted.append(entry.spec.name)

    monkeypatch.setattr(fleet, "_submit", submit)
    return submitted


def cpu_fleet_one_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Fleet, list[str]]:
    """Two CPU slots of one thread each and three FGSM runs, the first running in slot 0 (its
    job never ends); the fleet and the names of the runs it submits from then on."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = Study(tmp_path, "mini", seeds=(1, 2, 3))
    fleet = Fleet(Launcher("local", parallel=2, threads=2), tmp_path, study.specs("fgsm"), False)
    first = next(iter(fleet.entries.values()))
    first.status, first.slot, first.job = "running", 0, "job"
    monkeypatch.setattr(Launcher, "phases", lambda self, jobs: ["running"] * len(jobs))
    return fleet, submitted_without_jobs(fleet, monkeypatch)


def test_an_analysis_takes_the_free_slots_and_their_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU the main process's figure waits for a free slot, takes every free one with
    their threads, and no run starts in them meanwhile; afterwards its threads are restored."""
    fleet, submitted = cpu_fleet_one_running(tmp_path, monkeypatch)
    busy, waiting, _ = fleet.entries.values()
    before = torch.get_num_threads()
    with fleet.analysing():
        assert torch.get_num_threads() == 1  # slot 1 alone, one thread of the two
        fleet._update()
        assert submitted == []  # no run starts in the analysis's slot
    assert torch.get_num_threads() == before
    fleet._update()
    assert submitted == [waiting.spec.name]

    # every slot taken by a run: the analysis waits, and a slot freed goes to it, not to a run
    threads: list[int] = []

    def analyse() -> None:
        with fleet.analysing():
            threads.append(torch.get_num_threads())

    worker = threading.Thread(target=analyse)
    worker.start()
    time.sleep(0.3)
    assert worker.is_alive() and fleet._wanted
    with fleet._changed:
        busy.status, busy.slot = "done", None
        fleet._update()  # the third run waits; the freed slot is the analysis's
        fleet._changed.notify_all()
    worker.join(timeout=10)
    assert threads == [1] and submitted == [waiting.spec.name]
    waiting.status, waiting.slot = "done", None
    with fleet.analysing():  # nothing running: every thread
        assert torch.get_num_threads() == 2


def test_an_analysis_widens_into_a_slot_freed_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A figure started beside a run takes that run's slot and threads at its next checkpoint
    once the run ends and no run waits for the slot; while one waits, the run gets it."""
    fleet, submitted = cpu_fleet_one_running(tmp_path, monkeypatch)
    first, second, third = fleet.entries.values()
    seen: list[int] = []
    before = torch.get_num_threads()
    with fleet.analysing():
        for epoch in progress(range(4), "test"):
            seen.append(torch.get_num_threads())
            with fleet._changed:
                if epoch == 0:  # the run ends while two wait: the slot goes to the second
                    first.status, first.slot = "done", None
                    fleet._update()
                elif epoch == 1:  # the second ends; the third takes its slot
                    second.status, second.slot = "done", None
                    fleet._update()
                elif epoch == 2:  # the third ends, and none waits: the analysis widens
                    third.status, third.slot = "done", None
    assert seen == [1, 1, 1, 2]
    assert submitted == [second.spec.name, third.spec.name]
    assert torch.get_num_threads() == before and fleet._held == set()


def test_the_costly_runs_start_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long multi-step run started last would leave the other slots idle while it ends: the
    COSTLY methods' runs go first, the rest after them in plan order."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = Study(tmp_path, "mini", seeds=(1, 2), few_seeds=1)
    specs = [*study.specs("fgsm"), *study.specs("pgd10"), *study.specs("apart")]
    fleet = Fleet(Launcher("local", parallel=1, threads=1), tmp_path, specs, False)

    def done(entry: Entry) -> None:  # the job ended with its run complete
        entry.status, entry.slot = "done", None

    monkeypatch.setattr(Launcher, "phases", lambda self, jobs: ["ended"] * len(jobs))
    monkeypatch.setattr(fleet, "_ended", done)
    submitted = submitted_without_jobs(fleet, monkeypatch)
    for _ in specs:
        fleet._update()
    assert submitted == [
        "mini-pgd10-eps8-seed1",
        "mini-fgsm-eps8-seed1",
        "mini-fgsm-eps8-seed2",
        "mini-apart-eps8-seed1",
        "mini-apart-eps8-seed2",
    ]


def test_a_log_gets_the_progress_bar_when_it_changes_not_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Written to a file (no terminal), the bar over the runs is redrawn when a run's status
    changes, not at every poll: a study of hours would otherwise log a line a second."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = Study(tmp_path, "mini", seeds=(1, 2))
    fleet = Fleet(Launcher("local", parallel=1, threads=1), tmp_path, study.specs("fgsm"))
    monkeypatch.setattr(Launcher, "phases", lambda self, jobs: ["running"] * len(jobs))
    submitted_without_jobs(fleet, monkeypatch)
    capsys.readouterr()
    for _ in range(5):
        fleet._update()
    assert capsys.readouterr().err.count("1 waiting, 1 running") == 1
    first = fleet.entries["mini-fgsm-eps8-seed1"]
    first.status, first.slot = "done", None
    for _ in range(5):
        fleet._update()
    assert capsys.readouterr().err.count("1 running, 1 done") == 1


def test_runs_done_are_timed_before_each_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reproduction under a launcher killed while making a figure has already written the
    times of the runs done before it to timings.csv."""

    class DoneFleet:  # every run done already, in 60 s each
        def __init__(self, launcher: object, root: Path, specs: list) -> None:
            done = {"status": "done", "seconds": 60.0, "ended": time.perf_counter()}
            self.entries = {n: SimpleNamespace(**done) for n in ("run-a", "run-b")}
            self.failed: list = []

        def __enter__(self) -> DoneFleet:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def wait(self, names: list[str]) -> list[str]:
            return []

        def analysing(self) -> contextlib.nullcontext:
            return contextlib.nullcontext()

    def killed() -> list[Path]:
        raise KeyboardInterrupt  # as a kill while the second figure is made

    monkeypatch.setattr(reproduce_module, "Fleet", DoneFleet)
    spec = SimpleNamespace(name="spec")
    steps = [
        Step("train", "run-a", list, spec),
        Step("figure", "first", list, needs=("run-a",)),
        Step("train", "run-b", list, spec),
        Step("figure", "second", killed, needs=("run-b",)),
    ]
    timings = Timings(tmp_path / "timings.csv", write=True)
    with pytest.raises(KeyboardInterrupt):
        reproduce_module._launch(SimpleNamespace(root=tmp_path), steps, None, timings)
    written = pd.read_csv(tmp_path / "timings.csv")
    assert list(written["name"]) == ["run-a", "run-b", "first"]
    assert list(written["seconds"]) == [60.0, 60.0, 0.0]


@pytest.mark.slow
def test_local_jobs_stopped_and_killed_equal_the_sequential_study(
    data_dir: Path, tmp_path: Path
) -> None:
    sequential = robdrop(study_args(data_dir, tmp_path / "sequential"))
    out = finished(sequential)
    assert sequential.returncode == 0, out[-3000:]

    launched = tmp_path / "launched"
    args = study_args(data_dir, launched, "--launcher", "local", "--parallel", "2")
    first = robdrop(args)
    how = {STOPPED: signal.SIGTERM, KILLED: signal.SIGKILL}
    stop_in_second_epoch(launched / "runs", how, time.time() + 600)
    out = finished(first)
    # SIGTERM: partial.pt, the job ends cleanly and the run is submitted again
    assert f"[{STOPPED}] queued: stopped by SIGTERM (saved); submitted as job" in out, out[-3000:]
    assert (launched / "runs" / STOPPED / "epoch-003.pt").exists()
    # SIGKILL: the run fails, the others go on, the command says how to continue it
    assert first.returncode == 1, out[-3000:]
    assert f"[{KILLED}] failed:" in out and f"- {KILLED}: " in out
    assert f"--name {KILLED} --resume" in out
    assert f"- {KILLED}: " in (launched / "figures" / "summary.md").read_text()
    assert not (launched / "figures" / "figure5.png").exists()  # it needs the failed run

    again = robdrop(args)
    out = finished(again)
    assert again.returncode == 0, out[-3000:]
    assert f"[{STOPPED}] done: complete already" in out
    assert f"[{KILLED}] queued: submitted as job" in out
    assert (launched / "figures" / "figure5.png").exists()

    expected, got = saved(tmp_path / "sequential"), saved(launched)
    assert got.keys() == expected.keys()
    assert [k for k in expected if got[k] != expected[k]] == []


def test_the_launcher_benchmark_times_a_study_anew_or_reads_it_but_never_resumes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/launchers.py: a study stopped before its end (runs, no wall time) would be
    timed only for what was left; it is refused, a timed one is read without running."""
    bench = import_benchmark(monkeypatch, "launchers")
    ran: list[list[str]] = []
    monkeypatch.setattr(bench.subprocess, "run", lambda command, **kw: ran.append(command))
    stopped = tmp_path / "stopped"
    (stopped / "runs" / "mini-fgsm-eps8-seed1").mkdir(parents=True)
    with pytest.raises(click.ClickException, match="stopped before its end"):
        bench.timed_study([], stopped, 1)
    timed = tmp_path / "timed"
    (timed / "figures").mkdir(parents=True)
    (timed / "wall_seconds.txt").write_text("12.5\n")
    pd.DataFrame({"kind": ["train"], "total_seconds": [3.0]}).to_csv(
        timed / "figures" / "timings.csv", index=False
    )
    seconds, timings = bench.timed_study([], timed, 1)
    assert seconds == 12.5 and list(timings["total_seconds"]) == [3.0]
    assert ran == []
