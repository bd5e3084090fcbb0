"""The one training loop for every method, to be read top to bottom in `Trainer.fit`: build the
training state, open (or resume) the run folder, then per epoch train, measure (quick check,
the method's values, the monitor), save, and let the hooks react. Around it: the cyclic LR and
momentum, mixed precision, DistributedDataParallel under torchrun, and a clean stop on SIGTERM
(the batch in flight finishes, partial.pt is written, the process exits 0)."""

from __future__ import annotations

import platform
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torchvision
from tqdm.auto import tqdm

import robdrop
from robdrop.data import Loader, data_facts
from robdrop.methods.schedule import cyclic_lr, cyclic_momentum
from robdrop.training import distributed
from robdrop.training.config import TrainConfig
from robdrop.training.factories import build_state, load_data, resolve_device
from robdrop.training.hooks import EpochHook, MethodValues, QuickCheck
from robdrop.training.monitor.hook import MonitorHook
from robdrop.training.monitor.within import WithinEpoch
from robdrop.training.runs import Run, RunError
from robdrop.training.state import TrainingState


@dataclass
class EpochProgress:
    """How far an epoch got: batches done, seconds spent, sums of loss and of correct, examples."""

    sums: torch.Tensor  # float64 (loss sum, correct count) on the training device
    batches: int = 0
    seconds: float = 0.0
    count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.cpu(), "batches": self.batches, "seconds": self.seconds,
                "count": self.count}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], device: torch.device) -> EpochProgress:
        return cls(d["sums"].to(device), d["batches"], d["seconds"], d["count"])


def set_schedule(cfg: TrainConfig, state: TrainingState, progress: float) -> float:
    """Set θ's learning rate and momentum, and the method's own schedule, at `progress`; the LR."""
    lr = cyclic_lr(progress, cfg.lr_max, cfg.lr_peak)
    momentum = cyclic_momentum(lr, cfg.lr_max, cfg.momentum, cfg.momentum_at_peak)
    for group in state.optimizer.param_groups:
        group["lr"], group["momentum"] = lr, momentum
    state.method.schedule(progress)
    return lr


class Interrupted(Exception):
    """SIGTERM arrived inside an epoch: how far it got, for partial.pt."""

    def __init__(self, progress: EpochProgress) -> None:
        super().__init__(f"interrupted after batch {progress.batches}")
        self.progress = progress


def versions() -> dict[str, str]:
    return {
        "robdrop": robdrop.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


@contextmanager
def termination_requested() -> Any:
    """A flag set by SIGTERM (what schedulers send before pre-empting a job) while training."""
    flag = {"set": False}

    def request(signum: int, frame: Any) -> None:
        flag["set"] = True

    try:
        previous = signal.signal(signal.SIGTERM, request)
    except ValueError:  # not the main thread: leave the signal alone
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


class Trainer:
    """Trains one run. `Trainer(cfg, out).fit()` creates (or resumes) `out/<name>/`.

    Under torchrun every process builds a Trainer: each trains on its part of every minibatch
    through DistributedDataParallel, and rank 0 alone evaluates, monitors and writes files.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        out: str | Path = "checkpoints",
        *,
        name: str | None = None,
        resume: bool = False,
        ignore_stop: bool = False,
        progress: bool = True,
    ) -> None:
        cfg.validate()
        if ignore_stop and not resume:
            raise ValueError("--ignore-stop continues a run the monitor stopped: add --resume")
        self.cfg = cfg
        self.process = distributed.from_environment()
        self.progress = progress and self.process.main
        self.path = Path(out) / (name or cfg.default_name())
        self.device = distributed.start(self.process, resolve_device(cfg.device))
        exists = (self.path / "run.json").exists()
        if exists and not resume:
            raise RunError(
                f"run {self.path} already exists; pass --resume to continue it, or --name"
            )
        # load data before writing anything, so a missing dataset leaves no partial run behind
        self.data = load_data(cfg).to(self.device)
        self.resume = resume and exists
        self.ignore_stop = ignore_stop
        self.interrupted = False  # set when SIGTERM stopped training (partial.pt written)

    def fit(self) -> Run:
        cfg, device = self.cfg, self.device
        # model and method first: a bad option fails before any file is written
        state = build_state(cfg, data_facts(self.data), device, self.process)
        run = self._open_run()
        start, partial = self._restore(run, state) if self.resume else (1, None)
        metrics = run.metrics()
        if len(metrics):
            metrics = metrics[metrics["epoch"] < start]  # rows past the checkpoint are redone
        loader = self.data.train_loader(
            cfg.batch_size,
            seed=cfg.seed,
            memory_format=state.memory_format,
            rank=self.process.rank,
            world=self.process.world,
        )
        if run.info.get("stopped") and self.ignore_stop:
            if self.process.main:
                stop = run.ignore_stop()
                tqdm.write(f"[{run.name}] continuing after the monitor's stop: {stop}")
            distributed.barrier()  # rank 0 rewrote run.json; the others read it again
            run = Run(run.path)
        hooks = self._hooks(state, run) if self.process.main else []
        within = self._within_epoch(run, hooks, start, partial)
        if run.info.get("stopped"):
            tqdm.write(f"[{run.name}] stopped by the monitor: {run.info['stopped']}")
            tqdm.write(f"[{run.name}] to continue it anyway: --resume --ignore-stop")
            start = cfg.epochs + 1
        with termination_requested() as terminate:
            for epoch in range(start, cfg.epochs + 1):
                try:
                    row = self._train_epoch(epoch, loader, state, partial, terminate, within)
                except Interrupted as stopped:
                    self._interrupt(run, epoch, state, stopped.progress)
                    break
                partial = None
                metrics, stop = self._end_epoch(run, epoch, state, row, metrics, hooks)
                if distributed.any_rank(stop, device):
                    break
                if epoch < cfg.epochs and distributed.any_rank(terminate["set"], device):
                    self._interrupt(run, epoch, state, None)
                    break
        return run

    def _train_epoch(
        self,
        epoch: int,
        loader: Loader,
        state: TrainingState,
        partial: EpochProgress | None,
        terminate: dict[str, bool],
        within: WithinEpoch | None = None,
    ) -> dict[str, Any]:
        """One epoch (from `partial`'s batch when resuming one): its metrics row; `within`
        measures the monitor every K batches. Raises Interrupted, with how far it got, when
        SIGTERM arrives before its last batch."""
        cfg, device, method = self.cfg, self.device, state.method
        state.model.train()
        done = partial or EpochProgress(torch.zeros(2, device=device, dtype=torch.float64))
        lr = 0.0
        t0 = time.perf_counter() - done.seconds
        batches, num_batches = method.epoch_batches(loader, epoch)
        batches = tqdm(
            islice(batches, done.batches, None),
            total=num_batches,
            initial=done.batches,
            desc=f"epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=not self.progress,
        )
        for i, batch in enumerate(batches, start=done.batches):
            progress = ((epoch - 1) * num_batches + i) / (cfg.epochs * num_batches)
            lr = set_schedule(cfg, state, progress)
            step = method.train_step(batch, state.optimizer, state.scaler)
            done.sums += torch.stack([step.loss_sum.double(), step.correct.double()])
            done.count += step.count
            if within is not None and within.due(i + 1, num_batches):
                paused = time.perf_counter()
                within.measure(state, epoch, i + 1, num_batches)
                t0 += time.perf_counter() - paused  # `seconds` counts training only
            if i + 1 < num_batches and distributed.any_rank(terminate["set"], device):
                batches.close()
                done.batches, done.seconds = i + 1, time.perf_counter() - t0
                raise Interrupted(done)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        totals = distributed.sum_(torch.cat([done.sums, done.sums.new_tensor([done.count])]))
        return {
            "epoch": epoch,
            "lr": lr,
            "train_loss": totals[0].item() / totals[2].item(),
            "train_acc": totals[1].item() / totals[2].item(),
            "seconds": time.perf_counter() - t0,
        }

    def _end_epoch(
        self,
        run: Run,
        epoch: int,
        state: TrainingState,
        row: dict[str, Any],
        metrics: pd.DataFrame,
        hooks: list[EpochHook],
    ) -> tuple[pd.DataFrame, bool]:
        """Measure (hooks, in order), save metrics then the checkpoint, let the hooks react;
        the metrics so far and whether a hook stops the run (rank 0 decides)."""
        for hook in hooks:
            row.update(hook.measure(state, row, metrics))
        snapshot, examples = state.snapshot()  # a collective: every rank takes it
        if not self.process.main:
            return metrics, False
        new = pd.DataFrame([row])
        metrics = pd.concat([metrics, new], ignore_index=True) if len(metrics) else new
        # metrics first: a kill in between leaves a row that resume drops, never a gap
        run.write_metrics(metrics)
        keep = self.cfg.save_every_epoch
        run.save_checkpoint(epoch, snapshot, keep_previous=keep, examples=examples)
        stop = any([hook.react(run, metrics, state) for hook in hooks])
        self._report(run, row)
        return metrics, stop

    def _hooks(self, state: TrainingState, run: Run) -> list[EpochHook]:
        """What is measured after each epoch, in this order: the quick check on the first
        `eval_size` test images, the method's own values, the monitor (when it is on; in a run
        continued with --ignore-stop, its flag keeps best.pt but no longer stops)."""
        cfg = self.cfg
        quick = QuickCheck(
            cfg.eval_attack,
            cfg.eps_image,
            self.data.test_x[: cfg.eval_size],
            self.data.test_y[: cfg.eval_size],
            seed=cfg.seed,
            batch_size=cfg.eval_batch_size,
            device=self.device,
        )
        monitor = MonitorHook.for_run(cfg, type(state.method).single_step, self.data)
        if monitor and monitor.on_underfit == "stop" and run.info.get("stop_ignored"):
            monitor.on_underfit = "best"
        return [quick, MethodValues(), *([monitor] if monitor else [])]

    def _within_epoch(
        self, run: Run, hooks: list[EpochHook], start: int, partial: EpochProgress | None
    ) -> WithinEpoch | None:
        """The monitor inside epochs (`monitor_every`), on rank 0 with the monitor's signals;
        monitor.csv keeps only the rows of work that is not redone."""
        monitor = next((h for h in hooks if isinstance(h, MonitorHook)), None)
        if monitor is None or not self.cfg.monitor_every:
            return None
        return WithinEpoch.resume(
            monitor.signals,
            run,
            every=self.cfg.monitor_every,
            epochs=self.cfg.epochs,
            start=start,
            done=partial.batches if partial else 0,
        )

    def _open_run(self) -> Run:
        """The run folder: rank 0 creates or checks it while the other ranks wait, then read it."""
        distributed.barrier()  # every rank has looked at the folder before rank 0 writes to it
        run = self._create_or_check() if self.process.main else None
        distributed.barrier()
        return run or Run(self.path)

    def _create_or_check(self) -> Run:
        if self.resume:
            run = Run(self.path)
            run.remove_stale_temporaries()  # only rank 0 writes: none of them is in flight
            diff = run.config.differences(self.cfg)
            if diff:
                raise RunError(
                    f"run {self.path} was started with other settings {diff} (saved, asked)"
                )
            return run
        extra = {
            "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name(self.device)
            if self.device.type == "cuda"
            else platform.processor() or "cpu",
            "threads": torch.get_num_threads(),
            "processes": self.process.world,
            "command": " ".join(sys.argv),
            "monitor": self.cfg.monitor_record(),  # the signals that run, and the rule
        }
        return Run.create(self.path, self.cfg, data_facts(self.data), extra)

    def _restore(self, run: Run, state: TrainingState) -> tuple[int, EpochProgress | None]:
        """Load the last complete epoch, or partial.pt when it continues it; the epoch to start
        and, inside it, how far it had got."""
        last = run.last_epoch() or 0
        partial = run.load_partial(map_location=self.device)
        if partial is not None and partial["epoch"] != last + 1:
            partial = None  # older than the last complete epoch
        if partial is None and last == 0:
            return 1, None
        saved = partial or run.load_checkpoint(map_location=self.device)
        examples = saved["examples"] if partial else run.load_examples(last, self.device)
        method = state.method
        missing = set(method.example_state) & set(method.state_dict()) - set(examples)
        if missing:
            raise RunError(f"run {run.path} lacks examples-{last:03d}.pt to resume")
        state.restore(saved, examples)
        if partial is None:
            return last + 1, None
        return last + 1, EpochProgress.from_dict(partial["progress"], self.device)

    def _interrupt(
        self, run: Run, epoch: int, state: TrainingState, progress: EpochProgress | None
    ) -> None:
        """After SIGTERM: write partial.pt (mid-epoch) so that --resume continues exactly here."""
        self.interrupted = True
        snapshot, examples = state.snapshot()
        if not self.process.main:
            return
        if progress is not None:
            payload = {**snapshot, "examples": examples, "progress": progress.to_dict()}
            run.save_partial(epoch, payload)
            where = f"after batch {progress.batches} of epoch {epoch}"
        else:
            where = f"after epoch {epoch}"
        tqdm.write(f"[{run.name}] SIGTERM: stopped {where}; continue with --resume")

    def _report(self, run: Run, row: dict[str, Any]) -> None:
        if self.progress:
            cfg = self.cfg
            tqdm.write(
                f"[{run.name}] epoch {row['epoch']}/{cfg.epochs}  loss {row['train_loss']:.3f}  "
                f"train acc {row['train_acc']:.3f}  clean {row['test_clean_acc']:.3f}  "
                f"{cfg.eval_attack} {row[f'test_{cfg.eval_attack}_acc']:.3f}  "
                f"{row['seconds']:.1f}s"
            )


class TrainingInterrupted(RuntimeError):
    """SIGTERM stopped a run that a longer job (`robdrop reproduce`) needed; --resume goes on."""


def complete_run(cfg: TrainConfig, path: Path) -> Run | None:
    """The run at `path` when it was made with `cfg` and has its last epoch, else None."""
    if not (path / "run.json").exists():
        return None
    run = Run(path)
    return run if not run.config.differences(cfg) and run.last_epoch() == cfg.epochs else None


def ensure_trained(cfg: TrainConfig, out: str | Path = "checkpoints", **kw: Any) -> Run:
    """The run for `cfg` under `out`: reused when complete, resumed when partial, else trained.

    Raises TrainingInterrupted when SIGTERM stopped it (its state is saved for the next call).
    """
    path = Path(out) / (kw.pop("name", None) or cfg.default_name())
    done = complete_run(cfg, path)
    if done is not None:
        return done
    exists = (path / "run.json").exists()
    # a run started with other settings fails in Trainer with the differences spelled out
    trainer = Trainer(cfg, out, name=path.name, resume=exists, **kw)
    run = trainer.fit()
    if trainer.interrupted:
        raise TrainingInterrupted(f"SIGTERM stopped training {run.path}; run again to resume")
    return run
