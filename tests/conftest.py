"""Shared fixtures: the real CIFAR-10 archives (a few hundred images) and tiny models."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from robdrop.data import ImageData, load_cifar
from robdrop.models import build_model
from robdrop.training.runs import Run

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ROBDROP_DATA_DIR", REPO.parent / "shared" / "data"))

# at most 2 threads (CI has 2 cores); OMP_NUM_THREADS=1 is much faster on a busy machine
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", min(2, os.cpu_count() or 1))))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not list(DATA_DIR.glob("cifar10-*.npz")):
        pytest.fail(
            f"the real CIFAR-10 archives are needed: set ROBDROP_DATA_DIR (looked in {DATA_DIR})"
        )
    return DATA_DIR


@pytest.fixture(scope="session")
def cifar(data_dir: Path) -> ImageData:
    """256 training images, 64 held out, the full test set (uint8, CPU)."""
    return load_cifar("cifar10", data_dir, download=False, train_size=256, val_size=64)


@pytest.fixture
def tiny_model(cifar: ImageData) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("prn18", 10, cifar.mean, cifar.std, width=4)


@pytest.fixture(scope="session")
def test_batch(cifar: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
    """32 real test images in [0, 1] and their labels."""
    return cifar.test_x[:32].float() / 255, cifar.test_y[:32]


def fit_a_little(
    model: torch.nn.Module, cifar: ImageData, steps: int = 30, batch_size: int | None = None
) -> torch.nn.Module:
    """SGD on the training images, so attacks have gradients to use: `steps` full-batch steps,
    or with `batch_size` `steps` epochs of shuffled minibatches; returned in eval mode."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = cifar.train_x.float() / 255, cifar.train_y
    for _ in range(steps):
        batches = [slice(None)] if batch_size is None else torch.randperm(len(y)).split(batch_size)
        for batch in batches:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


def tiny_train_args(data_dir: Path, out: Path, method: str, *extra: str) -> list[str]:
    """CLI arguments for a seconds-long real training run."""
    return [
        "train", "--method", method, "--preset", "mini", "--data-dir", str(data_dir),
        "--train-size", "256", "--val-size", "64", "--width", "4", "--epochs", "1",
        "--eval-size", "64", "--eval-attack", "pgd2", "--batch-size", "64", "--seed", "0",
        "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def kill_after_first_epoch(
    args: list[str], run_dir: Path, epochs: int, until: Callable[[], bool] | None = None
) -> list[int]:
    """Run `robdrop *args` in a subprocess, SIGKILL it once epoch 1 is complete (and `until()`
    holds, when given); the epochs left.

    The child uses this process's thread count, since float reductions depend on it.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, "-m", "robdrop", *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300

    def ready() -> bool:
        return (run_dir / "epoch-001.pt").exists() and (until is None or until())

    while not ready() and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = Run(run_dir).epochs()
    assert done and done[-1] < epochs, "the kill came too late to test anything"
    return done


def method_state(run: Run, epoch: int) -> dict:
    """The method state saved with `epoch`, per-example buffers included."""
    return {**run.load_checkpoint(epoch)["method"], **run.load_examples(epoch)}


def import_benchmark(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """benchmarks/<name>.py imported as a module (it imports common.py and others beside it),
    registered under its name for the test's duration (a dataclass in it looks itself up)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module
