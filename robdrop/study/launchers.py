"""Where a study's training runs go: each run the plan needs becomes one job, the run's own
`robdrop train … --resume` command, on this machine (`local`, N at once) or on SLURM (`slurm`),
through submitit (`pip install -e .[cluster]`).

The run folder is the truth: a run whose last epoch is saved is done, whatever became of its
jobs. A job that ends before that was stopped by SIGTERM (a pre-emption: partial.pt is written
and the same command continues it, so it is submitted again) or failed (its log's last line
says why; the next `robdrop reproduce` submits it again, resuming from the last saved epoch).
Job ids are kept in `<study root>/.jobs/jobs.json`, so a reproduction started again reattaches
to the jobs still queued or running instead of submitting them twice. A background thread
watches the jobs and keeps the local slots full while the main thread draws the figures whose
runs are done; on a CPU the drawing takes the free slots and their threads for itself (no run
starts in them meanwhile), and widens into a slot freed while it draws when no run waits for it,
so the runs and the analyses never ask for more threads than there are, nor leave a core idle.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from tqdm.auto import tqdm

import robdrop
from robdrop.analysis.common import between_checkpoints
from robdrop.attacks import MissingExtra
from robdrop.study.study import COSTLY, RunSpec
from robdrop.training.config import make_config
from robdrop.training.job import INTERRUPTED, RunJob
from robdrop.training.runs import atomic_write_text
from robdrop.training.trainer import complete_run

# how `robdrop reproduce` trains: in its own process one run after another, or as jobs
LauncherName = Literal["sequential", "local", "slurm"]
LAUNCHERS: tuple[str, ...] = get_args(LauncherName)
# where a run stands: waiting for a slot, its job queued or running, the run complete, failed
Status = Literal["waiting", "queued", "running", "done", "failed"]
STATUSES: tuple[str, ...] = get_args(Status)
# SLURM states of a job that has not started yet (sacct; UNKNOWN: not listed yet)
SLURM_WAITING = ("PENDING", "REQUEUED", "CONFIGURING", "REQUEUE_HOLD", "SUSPENDED", "UNKNOWN")
SLURM_RUNNING = ("RUNNING", "COMPLETING")
# resubmissions of a run stopped by SIGTERM within one reproduction, before it counts as failed
MAX_REQUEUES = 10


def train_args(spec: RunSpec, root: Path) -> list[str]:
    """`robdrop train` arguments that make (or continue) exactly `spec`'s run under `root`.

    The settings that differ from the preset's for this method follow as `--set key=value`;
    a command that would make another configuration raises, so the job trains what the plan
    asked for.
    """
    cfg = spec.config
    base = make_config(cfg.preset, method=cfg.method).to_dict()
    changed = {k: v for k, v in cfg.to_dict().items() if base[k] != v}
    if make_config(cfg.preset, method=cfg.method, **changed) != cfg:
        raise ValueError(f"run {spec.name}'s configuration has no `robdrop train` command")
    args = ["train", "--method", cfg.method, "--preset", str(cfg.preset)]
    args += ["--out", str(Path(root).resolve()), "--name", spec.name, "--resume"]
    for key, value in changed.items():
        args += ["--set", f"{key}={_as_typed(value)}"]
    return args


def _as_typed(value: Any) -> str:
    """A setting as `--set` reads it back: plain text where JSON would not read it otherwise."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
    return json.dumps(value)


def shown(args: Sequence[str]) -> str:
    """A `robdrop` command line as a person would paste it into a shell."""
    return "robdrop " + shlex.join(args)


@dataclass(frozen=True)
class Launcher:
    """How runs become jobs: `local`, `parallel` runs at once on this machine (a GPU each where
    there are GPUs, else the CPU threads divided), or `slurm`, one job per run on the cluster."""

    kind: Literal["local", "slurm"]
    parallel: int = 2  # local: runs at once
    partition: str | None = None  # slurm
    gpus_per_job: int | None = None  # slurm (default: 1 with a partition of GPUs in mind)
    cpus_per_job: int | None = None  # slurm
    time_min: int = 24 * 60  # slurm: each job's time limit; a longer run is requeued
    account: str | None = None  # slurm
    sbatch: dict[str, str | bool] = field(default_factory=dict)  # slurm: more #SBATCH options
    poll_seconds: float | None = None  # default: 1 s locally, 30 s on SLURM
    # local: the CPU threads divided between the slots (this process's, when it was made)
    threads: int = field(default_factory=torch.get_num_threads)

    def __post_init__(self) -> None:
        if self.kind not in ("local", "slurm"):
            raise ValueError(f"a launcher is local or slurm, not {self.kind!r}")
        if self.parallel < 1:
            raise ValueError(f"--parallel must be at least 1, got {self.parallel}")

    @property
    def slots(self) -> int | None:
        """Runs at once: `parallel` locally; on SLURM every run is submitted and queued."""
        return self.parallel if self.kind == "local" else None

    @property
    def slot_threads(self) -> int:
        """local: the CPU threads of one slot."""
        return max(1, self.threads // self.parallel)

    @property
    def shares_cpu(self) -> bool:
        """Whether the runs and this process's analyses compete for the CPU threads (local
        without GPUs), so that an analysis must take slots of its own."""
        return self.kind == "local" and not torch.cuda.is_available()

    @property
    def poll(self) -> float:
        return self.poll_seconds or (1.0 if self.kind == "local" else 30.0)

    def environment(self, slot: int) -> dict[str, str]:
        """What the run in `slot` trains with: its threads and its GPU."""
        env: dict[str, str] = {}
        if self.kind == "local":
            threads = str(self.slot_threads)
            env |= {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            if torch.cuda.is_available():
                env["CUDA_VISIBLE_DEVICES"] = str(slot % torch.cuda.device_count())
        elif self.cpus_per_job:
            env |= {"OMP_NUM_THREADS": str(self.cpus_per_job)}
        return env

    def executor(self, folder: Path) -> Any:
        """A submitit executor writing its scripts, pickles and logs to `folder`."""
        submitit = _submitit()
        executor = submitit.AutoExecutor(folder=folder, cluster=self.kind)
        # the jobs import this very robdrop, installed or not
        code = shlex.quote(str(Path(robdrop.__file__).resolve().parents[1]))
        setup = [f"export PYTHONPATH={code}${{PYTHONPATH:+:$PYTHONPATH}}"]
        params: dict[str, Any] = {"name": "robdrop", "stderr_to_stdout": True}
        if self.kind == "local":  # the local controller stops a job at its time limit
            params |= {"timeout_min": 60 * 24 * 365, "local_setup": setup}
        else:
            params |= {
                "slurm_setup": setup,
                "timeout_min": self.time_min,
                "gpus_per_node": self.gpus_per_job,
                "cpus_per_task": self.cpus_per_job,
                "slurm_partition": self.partition,
                "slurm_account": self.account,
                "slurm_additional_parameters": dict(self.sbatch) or None,
            }
        executor.update_parameters(**params)
        return executor

    def job(self, folder: Path, job_id: str) -> Any:
        """The submitit job `job_id` submitted earlier from `folder` (to reattach to it)."""
        submitit = _submitit()
        kind = submitit.LocalJob if self.kind == "local" else submitit.SlurmJob
        return kind(folder, job_id)

    def phases(self, jobs: Sequence[Any]) -> list[Literal["queued", "running", "ended"]]:
        """Where each job is; on SLURM one sacct call for all of them."""
        if self.kind == "slurm" and jobs:
            jobs[0].watcher.update()
        return [self._phase(job) for job in jobs]

    def _phase(self, job: Any) -> Literal["queued", "running", "ended"]:
        if self.kind == "local":
            state = job.state
            if state.startswith("NO PROCESS"):  # submitted by an earlier reproduction
                return "running" if _controller_alive(job.job_id) else "ended"
            return "running" if state == "RUNNING" else "ended"
        state = (job.watcher.get_state(job.job_id, mode="cache") or "UNKNOWN").split()[0]
        if state in SLURM_RUNNING:
            return "running"
        return "queued" if state in SLURM_WAITING else "ended"


def _submitit() -> Any:
    """submitit, imported on first use (the `cluster` extra)."""
    try:
        import submitit
    except ImportError:
        raise MissingExtra(
            "--launcher local and slurm need submitit: pip install -e '.[cluster]'"
        ) from None
    return submitit


def _controller_alive(job_id: str) -> bool:
    """Whether submitit's local controller with this process id still runs."""
    cmdline = Path(f"/proc/{job_id}/cmdline")
    try:
        return b"submitit" in cmdline.read_bytes()
    except OSError:
        return False


def _job_outcome(job: Any) -> str | None:
    """What a job's function returned, or None when it raised or left no result."""
    from submitit.core.utils import pickle_load

    path = job.paths.result_pickle
    if not path.exists():
        return None
    outcome, value = pickle_load(path)
    return value if outcome == "success" else None


def last_log_line(job: Any) -> str:
    """The last line a job wrote (progress bars' carriage returns count as line ends)."""
    path = job.paths.stdout
    if not path.exists():
        return f"no log at {path}"
    with path.open("rb") as log:
        log.seek(max(0, path.stat().st_size - 4096))
        tail = log.read().decode(errors="replace").replace("\r", "\n")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


@dataclass
class Entry:
    """One run under a launcher: its command, where it stands and the job carrying it."""

    spec: RunSpec
    args: list[str]
    status: Status = "waiting"
    job: Any = None
    slot: int | None = None
    started: float | None = None  # when its job was first seen running
    seconds: float = 0.0  # from then until the run was complete
    ended: float | None = None  # when the run was seen complete (`time.perf_counter`)
    requeues: int = 0
    note: str = ""  # why it failed: the log's last line

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    @property
    def command(self) -> str:
        return shown(self.args)


class Fleet:
    """The study's runs as jobs of one launcher, submitted and watched in a background thread
    with one progress bar over them; `wait` blocks until given runs are done or failed.

    Runs start costliest first (the multi-step methods of COSTLY, then the others, each in plan
    order), so that a long run is not the last to start, with the other slots idle while it
    ends; the figures that need it wait for it either way.
    """

    def __init__(
        self, launcher: Launcher, root: Path, specs: Sequence[RunSpec], progress: bool = True
    ) -> None:
        self.launcher, self.root = launcher, Path(root)
        self.folder = self.root / ".jobs"
        self.folder.mkdir(parents=True, exist_ok=True)
        costliest_first = sorted(specs, key=lambda s: s.config.method_key not in COSTLY)
        self.entries = {s.name: Entry(s, train_args(s, self.root)) for s in costliest_first}
        self.executor = launcher.executor(self.folder)
        self.start = time.perf_counter()
        self._changed = threading.Condition(threading.RLock())  # _widen nests in it
        self._held: set[int] = set()  # slots this process's analysis has taken
        self._wanted = False  # an analysis waits for a slot: no run may take a freed one
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._watch, name="robdrop-fleet", daemon=True)
        self._bar = tqdm(total=len(specs), desc=f"runs ({launcher.kind})", unit="run",
                         disable=not progress)  # fmt: skip
        self._live = sys.stderr.isatty()  # a terminal's bar shows the time passing: every poll
        self._shown: tuple[int, str] | None = None  # what the bar shows: runs ended, by status

    def __enter__(self) -> Fleet:
        self._reattach()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.wait(list(self.entries))
        self._bar.close()

    def wait(self, names: Sequence[str]) -> list[str]:
        """Block until each of `names` is done or failed; the failed ones."""
        with self._changed:
            while not all(self.entries[n].finished for n in names):
                if self._error is not None:
                    raise self._error
                self._changed.wait(timeout=5.0)
        if self._error is not None:
            raise self._error
        return [n for n in names if self.entries[n].status == "failed"]

    @contextmanager
    def analysing(self) -> Iterator[None]:
        """This process makes a figure or table. Where it shares the CPU with the runs (local,
        no GPU), it waits for a free slot, takes every free one with their threads and keeps
        runs out of them until it is done, and before each checkpoint it analyses takes the
        slots freed meanwhile; elsewhere it goes ahead as it is."""
        if not self.launcher.shares_cpu:
            yield
            return
        with self._changed:
            self._wanted = True
            while not self._free_slots():
                if self._error is not None:
                    raise self._error
                self._changed.wait(timeout=5.0)
            self._wanted = False
            before = torch.get_num_threads()
            self._widen()  # under the same lock: no run takes the slot waited for meanwhile
        try:
            with between_checkpoints(self._widen):
                yield
        finally:
            torch.set_num_threads(before)
            with self._changed:
                self._held = set()

    def _widen(self) -> None:
        """The analysis takes every free slot and its threads (called in the analysis's thread).
        A slot a run ended in is free here only if no run waits for it: the watching thread
        fills it in the same step, under the same (reentrant) lock, when one does."""
        with self._changed:
            free = self._free_slots()
            if not free:
                return
            self._held |= set(free)
            held = len(self._held)
        torch.set_num_threads(min(self.launcher.threads, held * self.launcher.slot_threads))

    @property
    def failed(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.status == "failed"]

    # -- the watching thread ----------------------------------------------------------------------
    def _watch(self) -> None:
        try:
            while True:
                with self._changed:
                    self._update()
                    self._changed.notify_all()
                if all(e.finished for e in self.entries.values()):
                    return
                time.sleep(self.launcher.poll)
        except BaseException as err:  # handed to the main thread by `wait`
            self._error = err
            with self._changed:
                self._changed.notify_all()

    def _reattach(self) -> None:
        """Runs already complete are done; jobs of an earlier reproduction still queued or
        running are followed instead of submitted again."""
        recorded = {n: r for n, r in self._recorded().items() if n in self.entries}
        mine = [n for n, r in recorded.items() if r["launcher"] == self.launcher.kind]
        live = {n: self.launcher.job(self.folder, recorded[n]["job_id"]) for n in mine}
        phases = dict(zip(live, self.launcher.phases(list(live.values())), strict=True))
        for name, entry in self.entries.items():
            if complete_run(entry.spec.config, self.root / name) is not None:
                entry.ended = time.perf_counter()
                self._set(entry, "done", "complete already")
            elif phases.get(name, "ended") != "ended":
                entry.job = live[name]
                entry.slot = self._free_slot()
                self._set(entry, phases[name], f"reattached to job {entry.job.job_id}")

    def _update(self) -> None:
        """One look at every job: note what changed and fill the free slots."""
        active = [e for e in self.entries.values() if e.job is not None and not e.finished]
        for entry, phase in zip(active, self.launcher.phases([e.job for e in active]), strict=True):
            if phase == "running" and entry.started is None:
                entry.started = time.perf_counter()
            if phase != "ended":
                if entry.status != phase:
                    self._set(entry, phase, f"job {entry.job.job_id}")
                continue
            self._ended(entry)
        for entry in self.entries.values():
            if entry.status == "waiting" and not self._wanted and self._free_slot() is not None:
                self._submit(entry)
        counts = {s: sum(e.status == s for e in self.entries.values()) for s in STATUSES}
        shown = (
            counts["done"] + counts["failed"],
            ", ".join(f"{n} {s}" for s, n in counts.items() if n),
        )
        if shown != self._shown or self._live:  # a log file gets a line per change, not per poll
            self._shown = shown
            self._bar.n = shown[0]
            self._bar.set_postfix_str(shown[1], refresh=False)
            self._bar.refresh()

    def _ended(self, entry: Entry) -> None:
        """A job ended: its run is complete, stopped by SIGTERM (submitted again) or failed."""
        if complete_run(entry.spec.config, self.root / entry.spec.name) is not None:
            entry.ended = time.perf_counter()
            entry.seconds = entry.ended - (entry.started or entry.ended)
            entry.slot = None
            self._set(entry, "done", f"in {entry.seconds / 60:.1f} min")
        elif _job_outcome(entry.job) == INTERRUPTED and entry.requeues < MAX_REQUEUES:
            entry.requeues += 1
            self._submit(entry, entry.slot, "stopped by SIGTERM (saved); ")
        else:
            entry.note = last_log_line(entry.job)
            entry.slot = None
            self._set(entry, "failed", f"{entry.note} (log: {entry.job.paths.stdout})")

    def _free_slots(self) -> list[int]:
        """The local slots neither a job nor an analysis holds (SLURM: always slot 0)."""
        slots = self.launcher.slots
        if slots is None:
            return [0]
        taken = {e.slot for e in self.entries.values() if not e.finished and e.slot is not None}
        return [s for s in range(slots) if s not in taken | self._held]

    def _free_slot(self) -> int | None:
        """A slot a run may start in, if any."""
        return next(iter(self._free_slots()), None)

    def _submit(self, entry: Entry, slot: int | None = None, why: str = "") -> None:
        """Submit the run's command as a job in `slot` (a free one by default)."""
        entry.slot = self._free_slot() if slot is None else slot
        function = RunJob(entry.args, self.root / entry.spec.name, entry.spec.config.epochs,
                          self.launcher.environment(entry.slot or 0))  # fmt: skip
        entry.job = self.executor.submit(function)
        recorded = self._recorded()
        job = {"job_id": str(entry.job.job_id), "launcher": self.launcher.kind}
        recorded[entry.spec.name] = job
        atomic_write_text(self.folder / "jobs.json", json.dumps(recorded, indent=1) + "\n")
        self._set(entry, "queued", f"{why}submitted as job {entry.job.job_id}")

    def _recorded(self) -> dict[str, dict[str, str]]:
        path = self.folder / "jobs.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _set(self, entry: Entry, status: Status, note: str) -> None:
        entry.status = status
        self._bar.write(f"[{entry.spec.name}] {status}: {note}")


def failure_report(failed: Sequence[Entry], reproduce: Sequence[str]) -> str:
    """Markdown naming each failed run, why, and the commands that continue it."""
    lines = ["## Failed runs", ""]
    for entry in failed:
        lines += [f"- {entry.spec.name}: {entry.note}", f"  rerun: `{entry.command}`"]
    if reproduce:
        lines += ["", f"Or run the reproduction again: `{' '.join(reproduce)}`"]
    return "\n".join(lines) + "\n"
