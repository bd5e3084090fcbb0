"""Never losing a run: SIGKILL at random moments and SIGTERM, then --resume, end with exactly the
weights (and per-example state) of an uninterrupted run; partial.pt is refused when foreign."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robdrop.cli import main
from robdrop.training.runs import Run, RunError

from .conftest import method_state, tiny_train_args

EXTRA = ("--epochs", "3", "--batch-size", "16")  # 16 minibatches per epoch: time to interrupt
NAME = "mini-apart-eps8-seed0"


def _start(args: list[str]) -> subprocess.Popen:
    """`robdrop *args --resume` in a child using this process's thread count (float sums
    depend on it), so its weights can equal those trained in this process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, "-m", "robdrop", *args, "--resume"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)


def _assert_same_run(a: Run, b: Run) -> None:
    assert b.epochs() == a.epochs() == [3]
    wa, wb = a.load_checkpoint()["model"], b.load_checkpoint()["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = method_state(a, 3), method_state(b, 3)
    assert all(torch.equal(sa[k], sb[k]) for k in sa if isinstance(sa[k], torch.Tensor))
    assert list(b.metrics()["epoch"]) == [1, 2, 3]
    assert a.metrics()["test_pgd2_acc"].tolist() == b.metrics()["test_pgd2_acc"].tolist()
    assert not b.partial_path.exists()
    assert not [p for p in b.path.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def reference(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    result = CliRunner().invoke(main, tiny_train_args(data_dir, out, "apart", *EXTRA))
    assert result.exit_code == 0, result.output
    return Run(out / NAME)


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_weights(
    reference, data_dir, tmp_path
):
    args = tiny_train_args(data_dir, tmp_path, "apart", *EXTRA)
    started = time.perf_counter()
    assert _start(args).wait(timeout=600) == 0  # how long a whole child run takes here
    duration = time.perf_counter() - started
    shutil.rmtree(tmp_path / NAME)
    rng = random.Random(7)
    cut_short = 0
    for _ in range(5):  # uniform over a whole run: import, data, epochs, evaluation, writes
        child = _start(args)
        time.sleep(rng.uniform(0.0, duration))
        child.send_signal(signal.SIGKILL)
        cut_short += child.wait() == -signal.SIGKILL
        if (tmp_path / NAME / "run.json").exists():  # what a kill leaves is complete
            run = Run(tmp_path / NAME)
            assert all(run.load_checkpoint(e)["epoch"] == e for e in run.epochs())
    assert cut_short >= 3  # the kills interrupted training, or the test tested nothing
    final = _start(args)
    assert final.wait(timeout=600) == 0
    _assert_same_run(reference, Run(tmp_path / NAME))


def test_sigterm_finishes_the_batch_writes_partial_state_and_exits_zero(
    reference, data_dir, tmp_path
):
    args = tiny_train_args(data_dir, tmp_path, "apart", *EXTRA)
    run_dir = tmp_path / NAME
    child = _start(args)
    deadline = time.time() + 300
    while not (run_dir / "epoch-001.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(reference.metrics()["seconds"][1] / 2)  # halfway through epoch 2
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 0
    assert b"interrupted" in out
    run = Run(run_dir)
    partial = run.load_partial()
    assert partial is not None and partial["epoch"] == 2 and run.epochs() == [1]
    assert 0 < partial["progress"]["batches"] < 16
    final = _start(args)
    assert final.wait(timeout=600) == 0
    _assert_same_run(reference, run)


def test_a_partial_state_of_another_run_is_refused(reference, data_dir, tmp_path):
    args = tiny_train_args(data_dir, tmp_path, "fgsm", "--epochs", "2")
    assert CliRunner().invoke(main, args).exit_code == 0
    other = Run(tmp_path / "mini-fgsm-eps8-seed0")
    reference_partial = {"progress": {}, "model": {}}
    reference.save_partial(1, reference_partial)
    try:
        other.partial_path.write_bytes(reference.partial_path.read_bytes())
        with pytest.raises(
            RunError, match="method 'apart' where run mini-fgsm-eps8-seed0 has 'fgsm'"
        ):
            other.load_partial()
    finally:
        reference.partial_path.unlink()
