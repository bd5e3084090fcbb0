"""The one training loop for every method: cyclic LR, mixed precision, progress, per-epoch
checkpoints, resume from the last complete epoch, DistributedDataParallel under torchrun, and a
clean stop on SIGTERM (the batch in flight finishes, partial.pt is written, the process exits 0)."""

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

import numpy as np
import pandas as pd
import torch
import torchvision
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

import robdrop
from robdrop import distributed
from robdrop.attacks import make_attack
from robdrop.attacks.base import seeded
from robdrop.attacks.evaluate import accuracy_under
from robdrop.config import TrainConfig
from robdrop.data import ImageData, data_facts, load_cifar
from robdrop.folder_data import FolderData, Phase, load_imagefolder
from robdrop.methods import Method, build_method
from robdrop.monitor import UnderfitMonitor, UnderfitRule
from robdrop.runs import Run, RunError, method_context_for, model_for


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


def cyclic_lr(progress: float, lr_max: float, peak: float = 0.5) -> float:
    """The paper's cyclic schedule: 0 → lr_max (at `peak`) → 0, linear, over training progress."""
    return float(np.interp(progress, [0.0, peak, 1.0], [0.0, lr_max, 0.0]))


def cyclic_momentum(lr: float, lr_max: float, momentum: float, at_peak: float | None) -> float:
    """Momentum moving against the learning rate, `momentum` at LR 0 and `at_peak` at lr_max
    (torch's CyclicLR with cycle_momentum); constant when `at_peak` is None."""
    if at_peak is None:
        return momentum
    return momentum - (momentum - at_peak) * lr / lr_max


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here")
    return device


def load_data(cfg: TrainConfig) -> ImageData | FolderData:
    """The dataset a config names (raises DatasetNotFound saying where it looked)."""
    if cfg.dataset == "imagenet":
        return load_imagefolder(
            cfg.data_dir,
            image_size=cfg.image_size,
            test_size=cfg.eval_size,
            workers=cfg.workers,
            phases=tuple(Phase(**p) for p in cfg.resize_phases),
        )
    return load_cifar(
        cfg.dataset,
        cfg.data_dir,
        download=cfg.download,
        train_size=cfg.train_size,
        val_size=cfg.val_size,
    )


def versions() -> dict[str, str]:
    return {
        "robdrop": robdrop.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_rng(state: dict[str, Any], process: distributed.Process) -> None:
    """This rank's saved RNG state (rank 0's when the job had another number of processes)."""
    ranks = state.get("rng_ranks", [])
    set_rng_state(ranks[process.rank] if len(ranks) == process.world else state["rng"])


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
        progress: bool = True,
    ) -> None:
        cfg.validate()
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
        self.interrupted = False  # set when SIGTERM stopped training (partial.pt written)

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
        }
        return Run.create(self.path, self.cfg, data_facts(self.data), extra)

    def fit(self) -> Run:
        cfg, device, process = self.cfg, self.device, self.process
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
        memory_format = (
            torch.channels_last if cuda and cfg.channels_last else torch.contiguous_format
        )
        torch.manual_seed(cfg.seed)  # the same on every rank: identical model and method
        facts = data_facts(self.data)
        # model and method first: a bad option fails before any file is written
        model = model_for(cfg, facts, device).to(memory_format=memory_format)
        method = build_method(cfg.method, model, method_context_for(cfg, facts, device))
        run = self._open_run()
        optimizer = torch.optim.SGD(
            model.parameters(), lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and cuda)
        if process.distributed:  # own random draws per rank (a resume restores them)
            torch.manual_seed(cfg.seed * 1_000_003 + process.rank)
        start, partial = 1, None
        if self.resume:
            start, partial = self._restore(run, model, method, optimizer, scaler)
        metrics = run.metrics()
        if len(metrics):
            metrics = metrics[metrics["epoch"] < start]  # rows past the checkpoint are redone
        if process.distributed:
            ids = [device.index] if cuda else None
            method.learner = DistributedDataParallel(model, device_ids=ids)
        loader = self.data.train_loader(
            cfg.batch_size,
            seed=cfg.seed,
            memory_format=memory_format,
            rank=process.rank,
            world=process.world,
        )
        monitor = self._monitor(type(method).single_step) if process.main else None
        if run.info.get("stopped"):
            tqdm.write(f"[{run.name}] stopped by the monitor: {run.info['stopped']}")
            start = cfg.epochs + 1
        training = (model, method, optimizer, scaler)
        with termination_requested() as terminate:
            for epoch in range(start, cfg.epochs + 1):
                row = self._train_epoch(epoch, loader, *training, partial, terminate)
                partial = None
                if not isinstance(row, dict):  # SIGTERM in the middle of the epoch
                    self._interrupt(run, epoch, *training, row)
                    break
                if process.main:
                    row.update(self._evaluate(model))
                    row.update(method.epoch_metrics())
                    if monitor is not None:
                        row.update(monitor.measure(model, method, device))
                        row["monitor_flag"] = monitor.flag(row, metrics.to_dict("records"))
                state, examples = self._state(*training)
                stop = False
                if process.main:
                    new = pd.DataFrame([row])
                    metrics = pd.concat([metrics, new], ignore_index=True) if len(metrics) else new
                    # metrics first: a kill in between leaves a row that resume drops, never a gap
                    run.write_metrics(metrics)
                    run.save_checkpoint(
                        epoch, state, keep_previous=cfg.save_every_epoch, examples=examples
                    )
                    stop = monitor is not None and self._react(run, metrics, state["model"])
                    self._report(run, row)
                if distributed.any_rank(stop, device):
                    break
                if epoch < cfg.epochs and distributed.any_rank(terminate["set"], device):
                    self._interrupt(run, epoch, *training, None)
                    break
        return run

    def _restore(
        self,
        run: Run,
        model: torch.nn.Module,
        method: Method,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> tuple[int, EpochProgress | None]:
        """Load the last complete epoch, or partial.pt when it continues it; the epoch to start."""
        last = run.last_epoch() or 0
        partial = run.load_partial(map_location=self.device)
        if partial is not None and partial["epoch"] != last + 1:
            partial = None  # older than the last complete epoch
        if partial is None and last == 0:
            return 1, None
        state = partial or run.load_checkpoint(map_location=self.device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        examples = state["examples"] if partial else run.load_examples(last, self.device)
        missing = set(method.example_state) & set(method.state_dict()) - set(examples)
        if missing:
            raise RunError(f"run {run.path} lacks examples-{last:03d}.pt to resume")
        method.load_state_dict({**state["method"], **examples})
        scaler.load_state_dict(state["scaler"])
        restore_rng(state, self.process)
        if partial is None:
            return last + 1, None
        return last + 1, EpochProgress.from_dict(partial["progress"], self.device)

    def _state(
        self,
        model: torch.nn.Module,
        method: Method,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """What resuming needs (every rank's RNG included), and the per-example buffers apart."""
        method_state = method.state_dict()
        examples = {k: method_state.pop(k) for k in method.example_state if k in method_state}
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "method": method_state,
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
        }
        if self.process.distributed:
            state["rng_ranks"] = distributed.gather(rng_state())
        return state, examples

    def _interrupt(
        self,
        run: Run,
        epoch: int,
        model: torch.nn.Module,
        method: Method,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        progress: EpochProgress | None,
    ) -> None:
        """After SIGTERM: write partial.pt (mid-epoch) so that --resume continues exactly here."""
        self.interrupted = True
        state, examples = self._state(model, method, optimizer, scaler)
        if not self.process.main:
            return
        if progress is not None:
            run.save_partial(epoch, {**state, "examples": examples, "progress": progress.to_dict()})
            where = f"after batch {progress.batches} of epoch {epoch}"
        else:
            where = f"after epoch {epoch}"
        tqdm.write(f"[{run.name}] SIGTERM: stopped {where}; continue with --resume")

    def _train_epoch(
        self,
        epoch: int,
        loader: Any,
        model: torch.nn.Module,
        method: Method,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        partial: EpochProgress | None,
        terminate: dict[str, bool],
    ) -> dict[str, Any] | EpochProgress:
        """One epoch (from `partial`'s batch when resuming one): its metrics row, or, when
        SIGTERM arrived, how far it got (batches, seconds, loss and correct sums, count)."""
        cfg, device = self.cfg, self.device
        model.train()
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
            lr = cyclic_lr(progress, cfg.lr_max, cfg.lr_peak)
            momentum = cyclic_momentum(lr, cfg.lr_max, cfg.momentum, cfg.momentum_at_peak)
            for group in optimizer.param_groups:
                group["lr"], group["momentum"] = lr, momentum
            method.schedule(progress)
            step = method.train_step(batch, optimizer, scaler)
            done.sums += torch.stack([step.loss_sum.double(), step.correct.double()])
            done.count += step.count
            if i + 1 < num_batches and distributed.any_rank(terminate["set"], device):
                batches.close()
                done.batches, done.seconds = i + 1, time.perf_counter() - t0
                return done
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

    def _evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """The per-epoch quick check on the first `eval_size` test images (clean and attacked).

        Its random starts come from a generator of its own (`seeded`), so the training RNG, and
        with it the trained weights, never depend on how training is observed.
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        test_x, test_y = self.data.test_x[: cfg.eval_size], self.data.test_y[: cfg.eval_size]
        kw = {"batch_size": cfg.eval_batch_size, "device": self.device}
        row = {}
        with seeded(cfg.seed, self.device):
            for spec in ("clean", cfg.eval_attack):
                attack = make_attack(spec, cfg.eps_float)
                row[f"test_{spec}_acc"] = accuracy_under(model, attack, test_x, test_y, **kw)
        return {**row, "eval_seconds": time.perf_counter() - t0}

    def _report(self, run: Run, row: dict[str, Any]) -> None:
        if self.progress:
            cfg = self.cfg
            tqdm.write(
                f"[{run.name}] epoch {row['epoch']}/{cfg.epochs}  loss {row['train_loss']:.3f}  "
                f"train acc {row['train_acc']:.3f}  clean {row['test_clean_acc']:.3f}  "
                f"{cfg.eval_attack} {row[f'test_{cfg.eval_attack}_acc']:.3f}  "
                f"{row['seconds']:.1f}s"
            )

    def _monitor(self, single_step: bool) -> UnderfitMonitor | None:
        """The run's underfitting monitor on the first `monitor_size` held-out images, if on."""
        cfg = self.cfg
        attack = cfg.monitor_attack(single_step)
        if attack is None:
            return None
        x, y = self.data.val_x[: cfg.monitor_size], self.data.val_y[: cfg.monitor_size]
        rule = UnderfitRule(**cfg.monitor_rule)
        return UnderfitMonitor(
            attack, cfg.eps_float, x, y, epochs=cfg.epochs, seed=cfg.seed, rule=rule
        )

    def _react(self, run: Run, metrics: pd.DataFrame, weights: dict[str, Any]) -> bool:
        """Keep best.pt, warn on a flag, and say whether to stop (`on_underfit`)."""
        cfg, row = self.cfg, metrics.iloc[-1]
        if (
            cfg.on_underfit != "warn"
            and row["monitor_robust_acc"] >= metrics["monitor_robust_acc"].max()
        ):
            run.save_best(int(row["epoch"]), weights, float(row["monitor_robust_acc"]))
        if not row["monitor_flag"]:
            return False
        tqdm.write(
            f"[{run.name}] epoch {int(row['epoch'])}: perturbation underfitting "
            f"({row['monitor_flag']}): gap {row['monitor_gap']:.3f}, accuracy under own "
            f"perturbations {row['monitor_own_acc']:.3f} vs random noise "
            f"{row['monitor_random_acc']:.3f}"
        )
        if cfg.on_underfit != "stop":
            return False
        run.mark_stopped(int(row["epoch"]), str(row["monitor_flag"]))
        return True


class TrainingInterrupted(RuntimeError):
    """SIGTERM stopped a run that a longer job (`robdrop reproduce`) needed; --resume goes on."""


def ensure_trained(cfg: TrainConfig, out: str | Path = "checkpoints", **kw: Any) -> Run:
    """The run for `cfg` under `out`: reused when complete, resumed when partial, else trained.

    Raises TrainingInterrupted when SIGTERM stopped it (its state is saved for the next call).
    """
    path = Path(out) / (kw.pop("name", None) or cfg.default_name())
    exists = (path / "run.json").exists()
    if exists:
        run = Run(path)
        if not run.config.differences(cfg) and run.last_epoch() == cfg.epochs:
            return run
    # a run started with other settings fails in Trainer with the differences spelled out
    trainer = Trainer(cfg, out, name=path.name, resume=exists, **kw)
    run = trainer.fit()
    if trainer.interrupted:
        raise TrainingInterrupted(f"SIGTERM stopped training {run.path}; run again to resume")
    return run
