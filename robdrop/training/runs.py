"""A run folder: run.json (config, data facts, versions), metrics.csv, epoch-NNN.pt checkpoints.

`Run` is the only code that reads or writes these files. Writes are atomic (temporary file,
fsync, rename), so a run killed at any moment leaves only complete files; reads use
`torch.load(weights_only=True)`, so a checkpoint from elsewhere cannot execute code.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robdrop.methods import Method, MethodContext, build_method
from robdrop.models import Classifier
from robdrop.training.config import TrainConfig
from robdrop.training.factories import method_context_for, model_for

CHECKPOINT_FORMAT = 1
_UMASK = os.umask(0)
os.umask(_UMASK)
_EPOCH_FILE = re.compile(r"epoch-(\d+)\.pt")
_EXAMPLES_FILE = re.compile(r"examples-(\d+)\.pt")


class RunError(RuntimeError):
    """A run folder or checkpoint is missing, corrupted or of another kind."""


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write a file so that it either appears complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


class Run:
    """One training run's folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "run.json").is_file():
            raise RunError(f"{self.path} is not a robdrop run (no run.json)")
        try:
            self.info: dict[str, Any] = json.loads((self.path / "run.json").read_text())
            self.config = TrainConfig.from_dict(self.info["config"])
        except (ValueError, KeyError) as err:
            raise RunError(f"{self.path / 'run.json'} is corrupted ({err})") from err

    @classmethod
    def create(cls, path: str | Path, config: TrainConfig, data: dict, extra: dict) -> Run:
        """Make the folder and its run.json (the full config, data facts and versions)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        info = {"config": config.to_dict(), "data": data, **extra}
        atomic_write_text(path / "run.json", json.dumps(info, indent=2) + "\n")
        return cls(path)

    def remove_stale_temporaries(self) -> None:
        """Delete the temporary files of writes that a killed process never finished."""
        for p in self.path.glob(".*.tmp"):
            p.unlink(missing_ok=True)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def data(self) -> dict[str, Any]:
        return self.info["data"]

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint_path(self, epoch: int) -> Path:
        return self.path / f"epoch-{epoch:03d}.pt"

    def epochs(self) -> list[int]:
        """Epochs with a complete checkpoint, in order."""
        found = (_EPOCH_FILE.fullmatch(p.name) for p in self.path.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def last_epoch(self) -> int | None:
        epochs = self.epochs()
        return epochs[-1] if epochs else None

    @property
    def best_path(self) -> Path:
        """best.pt: the epoch the monitor found most robust (with on_underfit stop or best)."""
        return self.path / "best.pt"

    def save_best(
        self, epoch: int, weights: dict[str, Any], robust_acc: float, measured_by: str
    ) -> None:
        """Atomically (re)write best.pt with the model weights of `epoch`, its robust accuracy
        and the metrics.csv column that measured it."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "identity": self.identity(),
            "monitor_robust_acc": robust_acc,
            "measured_by": measured_by,
            "model": weights,
        }
        atomic_write(self.best_path, lambda f: torch.save(payload, f))

    def mark_stopped(self, epoch: int, reason: str) -> None:
        """Record in run.json that the monitor stopped training after `epoch`."""
        self.info["stopped"] = {"epoch": epoch, "reason": reason}
        atomic_write_text(self.path / "run.json", json.dumps(self.info, indent=2) + "\n")

    def ignore_stop(self) -> dict[str, Any]:
        """Record in run.json that training continues a run the monitor stopped: `stopped`
        becomes `stop_ignored`, and the monitor's flag no longer stops this run; the stop."""
        stop = self.info.pop("stopped")
        self.info["stop_ignored"] = stop
        atomic_write_text(self.path / "run.json", json.dumps(self.info, indent=2) + "\n")
        return stop

    @property
    def partial_path(self) -> Path:
        """partial.pt: the mid-epoch state written when SIGTERM stopped training."""
        return self.path / "partial.pt"

    def save_partial(self, epoch: int, state: dict[str, Any]) -> None:
        """Atomically write the mid-epoch state of `epoch` (everything a resume needs)."""
        payload = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "identity": self.identity()}
        atomic_write(self.partial_path, lambda f: torch.save({**payload, **state}, f))

    def load_partial(self, map_location: Any = "cpu") -> dict[str, Any] | None:
        """partial.pt, checked to belong to this run, or None when there is none."""
        return self._read(self.partial_path, map_location) if self.partial_path.is_file() else None

    def examples_path(self, epoch: int) -> Path:
        return self.path / f"examples-{epoch:03d}.pt"

    def save_checkpoint(
        self,
        epoch: int,
        state: dict[str, Any],
        *,
        keep_previous: bool,
        examples: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Atomically write epoch `epoch`; without `keep_previous` older checkpoints are removed.

        `examples` (per-example method buffers, as large as the dataset) go to examples-NNN.pt,
        written before the checkpoint and kept for the latest epoch only.
        """
        previous = self.epochs()
        old_examples = [p for p in self.path.iterdir() if _EXAMPLES_FILE.fullmatch(p.name)]
        if examples:
            atomic_write(self.examples_path(epoch), lambda f: torch.save(examples, f))
        path = self.checkpoint_path(epoch)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "identity": self.identity(),
            **state,
        }
        atomic_write(path, lambda f: torch.save(payload, f))
        for p in old_examples:
            if p != self.examples_path(epoch):
                p.unlink(missing_ok=True)
        self.partial_path.unlink(missing_ok=True)  # the epoch it continued is complete now
        if not keep_previous:
            for e in previous:
                if e != epoch:
                    self.checkpoint_path(e).unlink(missing_ok=True)
        return path

    def load_examples(self, epoch: int, map_location: Any = "cpu") -> dict[str, torch.Tensor]:
        """The per-example method buffers saved with `epoch` ({} when none were kept for it)."""
        path = self.examples_path(epoch)
        if not path.is_file():
            return {}
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:
            raise RunError(f"{path} is corrupted ({type(err).__name__})") from err

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to belong to this run."""
        c = self.config
        return {
            "model": c.model,
            "width": c.width,
            "dataset": c.dataset,
            "method": c.method_key,
            "num_classes": self.data["num_classes"],
        }

    def load_checkpoint(
        self, epoch: int | None = None, map_location: Any = "cpu"
    ) -> dict[str, Any]:
        """The checkpoint of `epoch` (default: the last), checked to belong to this run."""
        epoch = self.last_epoch() if epoch is None else epoch
        if epoch is None:
            raise RunError(f"run {self.path} has no complete checkpoint yet")
        path = self.checkpoint_path(epoch)
        if not path.is_file():
            raise RunError(
                f"run {self.path} has no checkpoint for epoch {epoch} (has {self.epochs()})"
            )
        return self._read(path, map_location)

    def load_best(self, map_location: Any = "cpu") -> dict[str, Any]:
        """best.pt (epoch, monitor_robust_acc, model weights), checked to belong to this run."""
        if not self.best_path.is_file():
            raise RunError(
                f"run {self.path} has no best.pt (train with --on-underfit best or stop)"
            )
        return self._read(self.best_path, map_location)

    def _read(self, path: Path, map_location: Any) -> dict[str, Any]:
        """A robdrop checkpoint file, read with weights_only and checked against this run."""
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:
            raise RunError(
                f"{path} is corrupted or not a robdrop checkpoint ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]})"
            ) from err
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise RunError(f"{path} is not a robdrop checkpoint of format {CHECKPOINT_FORMAT}")
        theirs = state.get("identity") or {}
        if theirs != self.identity():
            diffs = "; ".join(
                f"{key} {theirs.get(key)!r} where run {self.name} has {value!r}"
                for key, value in self.identity().items()
                if theirs.get(key) != value
            )
            raise RunError(f"{path} belongs to another run: {diffs}")
        return state

    # -- rebuilding what was trained ---------------------------------------------------------
    def build_model(self, device: torch.device | str = "cpu") -> Classifier:
        return model_for(self.config, self.data, device)

    def method_context(self, device: torch.device | str = "cpu") -> MethodContext:
        return method_context_for(self.config, self.data, device)

    def load(
        self, epoch: int | None = None, device: torch.device | str = "cpu"
    ) -> tuple[Classifier, Method]:
        """θ^(epoch) in eval mode and the method with its learned state (f_A for analyses)."""
        state = self.load_checkpoint(epoch, map_location=device)
        model = self.build_model(device)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise RunError(
                f"{self.checkpoint_path(state['epoch'])} does not fit model {self.config.model}"
            ) from err
        method = build_method(self.config.method, model, self.method_context(device))
        method.load_state_dict({**state["method"], **self.load_examples(state["epoch"], device)})
        return model.eval(), method

    # -- metrics ----------------------------------------------------------------------------------
    def metrics(self) -> pd.DataFrame:
        """One row per completed epoch."""
        path = self.path / "metrics.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def write_metrics(self, frame: pd.DataFrame) -> None:
        atomic_write_text(self.path / "metrics.csv", frame.to_csv(index=False))

    def monitor_rows(self) -> pd.DataFrame:
        """The monitor's measurements inside epochs (`monitor_every`): a row per measurement
        with its epoch, iteration and fraction of training; empty when there are none."""
        path = self.path / "monitor.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def write_monitor_rows(self, frame: pd.DataFrame) -> None:
        """Atomically (re)write monitor.csv; an empty frame removes it."""
        path = self.path / "monitor.csv"
        if frame.empty:
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, frame.to_csv(index=False))


def find_runs(root: str | Path) -> list[Run]:
    """Every run folder directly under `root`, by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [Run(p) for p in sorted(root.iterdir()) if (p / "run.json").is_file()]


def run_costs(runs: Iterable[Run]) -> pd.DataFrame:
    """Minutes each run spent, from its own metrics.csv, whichever process, invocation or
    session trained it: run, method, epsilon, seed, epochs, train_min and eval_min (the
    per-epoch quick check)."""
    rows = []
    for run in runs:
        metrics = run.metrics()
        evaluation = metrics["eval_seconds"].sum() if "eval_seconds" in metrics else 0.0
        rows.append({
            "run": run.name,
            "method": run.config.method_key,
            "epsilon": run.config.eps255,
            "seed": run.config.seed,
            "epochs": len(metrics),
            "train_min": metrics["seconds"].sum() / 60 if len(metrics) else 0.0,
            "eval_min": evaluation / 60,
        })  # fmt: skip
    columns = ["run", "method", "epsilon", "seed", "epochs", "train_min", "eval_min"]
    return pd.DataFrame(rows, columns=columns)
