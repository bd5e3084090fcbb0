"""The one training loop for every method: cyclic LR, mixed precision, progress, per-epoch
checkpoints, resume from the last complete epoch."""

from __future__ import annotations

import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torchvision
from tqdm.auto import tqdm

import robdrop
from robdrop.attacks import make_attack
from robdrop.attacks.evaluate import accuracy_under
from robdrop.config import TrainConfig
from robdrop.data import ImageData, data_facts, load_cifar
from robdrop.folder_data import FolderData, load_imagefolder
from robdrop.methods import Method, build_method
from robdrop.monitor import UnderfitMonitor, UnderfitRule
from robdrop.runs import Run, RunError, method_context_for, model_for


def cyclic_lr(progress: float, lr_max: float, peak: float = 0.5) -> float:
    """The paper's cyclic schedule: 0 → lr_max (at `peak`) → 0, linear, over training progress."""
    return float(np.interp(progress, [0.0, peak, 1.0], [0.0, lr_max, 0.0]))


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
            cfg.data_dir, image_size=cfg.image_size, test_size=cfg.eval_size, workers=cfg.workers
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


class Trainer:
    """Trains one run. `Trainer(cfg, out).fit()` creates (or resumes) `out/<name>/`."""

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
        self.cfg, self.progress = cfg, progress
        self.path = Path(out) / (name or cfg.default_name())
        self.device = resolve_device(cfg.device)
        if (self.path / "run.json").exists() and not resume:
            raise RunError(
                f"run {self.path} already exists; pass --resume to continue it, or --name"
            )
        if resume and not (self.path / "run.json").exists():
            raise RunError(f"nothing to resume at {self.path} (no run.json)")
        # load data before writing anything, so a missing dataset leaves no partial run behind
        self.data = load_data(cfg).to(self.device)
        self.resume = resume

    def _open_run(self) -> Run:
        if self.resume:
            run = Run(self.path)
            saved, asked = run.config.to_dict(), self.cfg.to_dict()
            if saved != asked:
                diff = {k: (v, asked[k]) for k, v in saved.items() if asked[k] != v}
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
            "command": " ".join(sys.argv),
        }
        return Run.create(self.path, self.cfg, data_facts(self.data), extra)

    def fit(self) -> Run:
        cfg, device = self.cfg, self.device
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
        memory_format = (
            torch.channels_last if cuda and cfg.channels_last else torch.contiguous_format
        )
        torch.manual_seed(cfg.seed)
        facts = data_facts(self.data)
        # model and method first: a bad option fails before any file is written
        model = model_for(cfg, facts, device).to(memory_format=memory_format)
        method = build_method(cfg.method, model, method_context_for(cfg, facts, device))
        run = self._open_run()
        optimizer = torch.optim.SGD(
            model.parameters(), lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and cuda)
        metrics = run.metrics()
        start = 1
        if self.resume and run.last_epoch() is not None:
            state = run.load_checkpoint(map_location=device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            examples = run.load_examples(state["epoch"], map_location=device)
            missing = set(method.example_state) & set(method.state_dict()) - set(examples)
            if missing:
                raise RunError(f"run {run.path} lacks examples-{state['epoch']:03d}.pt to resume")
            method.load_state_dict({**state["method"], **examples})
            scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            start = state["epoch"] + 1
            if len(metrics):
                metrics = metrics[metrics["epoch"] <= state["epoch"]]
        loader = self.data.train_loader(cfg.batch_size, seed=cfg.seed, memory_format=memory_format)
        eval_attack = make_attack(cfg.eval_attack, cfg.eps_float)
        clean = make_attack("clean", cfg.eps_float)
        monitor = self._monitor(type(method).single_step)
        if run.info.get("stopped"):
            tqdm.write(f"[{run.name}] stopped by the monitor: {run.info['stopped']}")
            start = cfg.epochs + 1
        for epoch in range(start, cfg.epochs + 1):
            row = self._train_epoch(epoch, loader, model, method, optimizer, scaler)
            t0 = time.perf_counter()
            test_x, test_y = self.data.test_x[: cfg.eval_size], self.data.test_y[: cfg.eval_size]
            kw = {"batch_size": cfg.eval_batch_size, "device": device}
            row["test_clean_acc"] = accuracy_under(model, clean, test_x, test_y, **kw)
            row[f"test_{cfg.eval_attack}_acc"] = accuracy_under(
                model, eval_attack, test_x, test_y, **kw
            )
            row["eval_seconds"] = time.perf_counter() - t0
            row.update(method.epoch_metrics())
            if monitor is not None:
                row.update(monitor.measure(model, method, device))
                row["monitor_flag"] = monitor.flag(row, metrics.to_dict("records"))
            method_state = method.state_dict()
            examples = {k: method_state.pop(k) for k in method.example_state if k in method_state}
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "method": method_state,
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
            }
            new = pd.DataFrame([row])
            metrics = pd.concat([metrics, new], ignore_index=True) if len(metrics) else new
            # metrics first: a kill in between leaves a row that resume drops, never a gap
            run.write_metrics(metrics)
            run.save_checkpoint(epoch, state, keep_previous=cfg.save_every_epoch, examples=examples)
            if monitor is not None and self._react(run, metrics, state["model"]):
                break
            if self.progress:
                tqdm.write(
                    f"[{run.name}] epoch {epoch}/{cfg.epochs}  loss {row['train_loss']:.3f}  "
                    f"train acc {row['train_acc']:.3f}  clean {row['test_clean_acc']:.3f}  "
                    f"{cfg.eval_attack} {row[f'test_{cfg.eval_attack}_acc']:.3f}  "
                    f"{row['seconds']:.1f}s"
                )
        return run

    def _train_epoch(
        self,
        epoch: int,
        loader: Any,
        model: torch.nn.Module,
        method: Method,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> dict[str, Any]:
        cfg = self.cfg
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        count = 0
        lr = 0.0
        t0 = time.perf_counter()
        batches, num_batches = method.epoch_batches(loader, epoch)
        batches = tqdm(
            batches,
            total=num_batches,
            desc=f"epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=not self.progress,
        )
        for i, batch in enumerate(batches):
            progress = ((epoch - 1) * num_batches + i) / (cfg.epochs * num_batches)
            lr = cyclic_lr(progress, cfg.lr_max, cfg.lr_peak)
            for group in optimizer.param_groups:
                group["lr"] = lr
            method.schedule(progress)
            step = method.train_step(batch, optimizer, scaler)
            loss_sum += step.loss_sum
            correct += step.correct
            count += step.count
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum.item() / count,
            "train_acc": correct.item() / count,
            "seconds": time.perf_counter() - t0,
        }

    def _monitor(self, single_step: bool) -> UnderfitMonitor | None:
        """The run's underfitting monitor on the first `monitor_size` held-out images, if on."""
        cfg = self.cfg
        attack = cfg.monitor_attack(single_step)
        if attack is None:
            return None
        x, y = self.data.val_x[: cfg.monitor_size], self.data.val_y[: cfg.monitor_size]
        rule = UnderfitRule(**cfg.monitor_rule)
        return UnderfitMonitor(attack, cfg.eps_float, x, y, seed=cfg.seed, rule=rule)

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


def ensure_trained(cfg: TrainConfig, out: str | Path = "checkpoints", **kw: Any) -> Run:
    """The run for `cfg` under `out`: reused when complete, resumed when partial, else trained."""
    path = Path(out) / (kw.pop("name", None) or cfg.default_name())
    exists = (path / "run.json").exists()
    if exists:
        run = Run(path)
        if run.config.to_dict() == cfg.to_dict() and run.last_epoch() == cfg.epochs:
            return run
    # a run started with other settings fails in Trainer with the differences spelled out
    return Trainer(cfg, out, name=path.name, resume=exists, **kw).fit()
