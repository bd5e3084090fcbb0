"""torchrun with gloo on CPU: sharded minibatches, per-example state kept whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from click.testing import CliRunner

from robdrop.cli import main
from robdrop.data import batch_bounds, rank_part
from robdrop.training.runs import Run

from .conftest import tiny_train_args


def test_ranks_split_every_global_minibatch_without_overlap(cifar):
    world = 3
    loaders = [cifar.train_loader(50, seed=4, rank=r, world=world) for r in range(world)]
    single = cifar.train_loader(50, seed=4)
    seen = []
    for parts in zip(*(loader.epoch(2) for loader in loaders), strict=True):
        group = parts[0].shard.indices
        assert all(torch.equal(p.shard.indices, group) for p in parts)  # the same global batch
        assert torch.equal(torch.cat([p.idx for p in parts]), group)  # split in rank order
        assert max(len(p.idx) for p in parts) - min(len(p.idx) for p in parts) <= 1
        for p in parts:
            assert torch.equal(group[p.shard.start : p.shard.start + len(p.idx)], p.idx)
        seen.append(group)
    # the global minibatches are the single process's: --batch-size is the effective batch size
    assert all(torch.equal(a, b.idx) for a, b in zip(seen, single.epoch(2), strict=True))
    assert sorted(torch.cat(seen).tolist()) == list(range(cifar.num_train))


def test_a_last_minibatch_smaller_than_the_world_joins_the_one_before():
    assert batch_bounds(10, 4, world=1) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(9, 4, world=2) == [(0, 4), (4, 9)]
    assert [rank_part(5, r, 2) for r in (0, 1)] == [slice(0, 3), slice(3, 5)]


def torchrun(*args: str, timeout: int) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 -m robdrop *args`, one thread per process."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*cmd, "-m", "robdrop", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_torchrun_two_processes_train_apart_with_every_omega_updated_once(data_dir, tmp_path):
    """One epoch of APART on 2 gloo ranks: ω's step is α_1/α_ω = 0.01 and the step sizes stay
    fixed (μ_α = 0), so an example whose ω was updated exactly once has entries 0.01 ± 0.004
    (the 0.001·N(0, 1) start) inside its crop, none beyond, and ω untouched stays below 0.005."""
    out = tmp_path / "runs"
    args = tiny_train_args(data_dir, out, "apart", "-o", "alpha_omega_init=0.01")
    args += ["-o", "step_lr_max=0"]
    proc = torchrun(*args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run written") == 1  # rank 0 alone reports (and writes)
    run = Run(out / "mini-apart-eps8-seed0")
    assert json.loads((run.path / "run.json").read_text())["processes"] == 2
    assert run.epochs() == [1] and len(run.metrics()) == 1
    assert sorted(p.name for p in run.path.iterdir()) == [
        "epoch-001.pt",
        "examples-001.pt",
        "metrics.csv",
        "run.json",
    ]
    omega = run.load_examples(1)["omega"].abs().flatten(1)
    assert omega.shape[0] == 256  # saved whole
    once = ((omega > 0.005) & (omega < 0.015)).sum(1)
    assert once.min() > 0.5 * 3 * 32 * 32  # every example: most of its 32×32 crop moved once
    assert (omega >= 0.015).sum() == 0  # none moved twice
    # the result loads and evaluates like any run
    result = CliRunner().invoke(
        main, ["eval", str(run.path), "--attack", "pgd2", "--n", "32", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output


def test_torchrun_reproduce_trains_on_every_rank_and_draws_once(data_dir, tmp_path):
    from .test_reproduce import study_args

    runs, figures = tmp_path / "runs", tmp_path / "figures"
    # "--": torchrun would take reproduce's --n for an abbreviation of one of its own options
    # one seed (the last --seeds wins): the seeds are tested in test_reproduce
    only = ("--only", "table6", "--seeds", "1")
    args = ["--", "reproduce", *study_args(data_dir, runs, figures, *only)]
    proc = torchrun(*args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("written") >= 1 and (figures / "table6.md").is_file()
    trained = [json.loads((p / "run.json").read_text()) for p in runs.iterdir() if p.is_dir()]
    assert len(trained) == 3 and all(info["processes"] == 2 for info in trained)
