"""Trainer, runs and CLI on a few hundred real images: every method, checkpoints, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robdrop.cli import main
from robdrop.methods.schedule import cyclic_lr
from robdrop.training.runs import Run, RunError

from .conftest import kill_after_first_epoch, tiny_train_args


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("method", ["fgsm", "ffgsm", "pgd3"])
def test_one_epoch_of_each_method_writes_a_loadable_checkpoint(method, data_dir, tmp_path):
    result = cli(*tiny_train_args(data_dir, tmp_path, method, "--save-every-epoch"))
    assert result.exit_code == 0, result.output
    run = Run(tmp_path / f"mini-{method}-eps8-seed0")
    assert run.epochs() == [1]
    info = json.loads((run.path / "run.json").read_text())
    assert info["config"]["method"] == method and info["versions"]["torch"] == torch.__version__
    metrics = run.metrics()
    assert list(metrics["epoch"]) == [1]
    for col in ("lr", "train_loss", "train_acc", "seconds", "test_clean_acc", "test_pgd2_acc"):
        assert col in metrics.columns
    model, m = run.load(1)
    assert not model.training and m.name == method.rstrip("0123456789")
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_without_save_every_epoch_only_the_last_checkpoint_is_kept(data_dir, tmp_path):
    assert cli(*tiny_train_args(data_dir, tmp_path, "fgsm", "--epochs", "2")).exit_code == 0
    assert Run(tmp_path / "mini-fgsm-eps8-seed0").epochs() == [2]


def test_cyclic_lr_goes_zero_max_zero():
    assert cyclic_lr(0.0, 0.2) == 0 and cyclic_lr(0.5, 0.2) == pytest.approx(0.2)
    assert cyclic_lr(1.0, 0.2) == 0 and cyclic_lr(0.25, 0.2) == pytest.approx(0.1)
    assert cyclic_lr(0.4, 1.0, peak=0.4) == pytest.approx(1.0)


def _weights(run: Run) -> dict[str, torch.Tensor]:
    return run.load_checkpoint()["model"]


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(data_dir, tmp_path):
    extra = ("--save-every-epoch", "--epochs", "4", "--train-size", "512")
    assert cli(*tiny_train_args(data_dir, tmp_path / "a", "ffgsm", *extra)).exit_code == 0
    killed = tiny_train_args(data_dir, tmp_path / "b", "ffgsm", *extra)
    run_dir = tmp_path / "b" / "mini-ffgsm-eps8-seed0"
    kill_after_first_epoch(killed, run_dir, epochs=4)
    assert cli(*killed, "--resume").exit_code == 0
    a, b = Run(tmp_path / "a" / "mini-ffgsm-eps8-seed0"), Run(run_dir)
    assert b.epochs() == [1, 2, 3, 4]
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert list(b.metrics()["epoch"]) == [1, 2, 3, 4]
    assert a.metrics()["test_pgd2_acc"].tolist() == b.metrics()["test_pgd2_acc"].tolist()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "nosuch"], "unknown method 'nosuch'"),
        (["--eps", "300"], "--eps is in /255 units"),
        (
            ["--data-dir", "/nonexistent/robdrop", "--no-download"],
            "cifar10 was not found in /nonexistent/robdrop",
        ),
        (["--eval-attack", "pgdq"], "unknown attack 'pgdq'"),
    ],
)
def test_bad_input_is_one_sentence_and_leaves_no_files(extra, message, data_dir, tmp_path):
    result = CliRunner().invoke(main, [*tiny_train_args(data_dir, tmp_path, "fgsm"), *extra])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


def test_corrupted_and_foreign_checkpoints_fail_clearly(data_dir, tmp_path):
    assert cli(*tiny_train_args(data_dir, tmp_path, "fgsm", "--epochs", "2")).exit_code == 0
    assert (
        cli(
            *tiny_train_args(data_dir, tmp_path, "fgsm", "--model", "prn20", "--name", "other")
        ).exit_code
        == 0
    )
    run = Run(tmp_path / "mini-fgsm-eps8-seed0")
    ckpt = run.checkpoint_path(2)
    # a checkpoint of another model in this run's folder
    ckpt.write_bytes(Run(tmp_path / "other").checkpoint_path(1).read_bytes())
    with pytest.raises(RunError, match="belongs to another run: model 'prn20' where run mini-fgsm"):
        run.load(2)
    result = CliRunner().invoke(
        main, [*tiny_train_args(data_dir, tmp_path, "fgsm", "--epochs", "3"), "--resume"]
    )
    assert result.exit_code != 0 and "other settings" in result.output
    # a truncated file
    ckpt.write_bytes(b"\x80\x02garbage")
    result = CliRunner().invoke(
        main, [*tiny_train_args(data_dir, tmp_path, "fgsm", "--epochs", "2"), "--resume"]
    )
    assert result.exit_code != 0 and "is corrupted or not a robdrop checkpoint" in result.output


def test_existing_run_needs_resume(data_dir, tmp_path):
    assert cli(*tiny_train_args(data_dir, tmp_path, "fgsm")).exit_code == 0
    result = CliRunner().invoke(main, tiny_train_args(data_dir, tmp_path, "fgsm"))
    assert result.exit_code != 0 and "already exists; pass --resume" in result.output


def test_resume_accepts_the_data_folder_spelled_another_way(data_dir, tmp_path):
    assert cli(*tiny_train_args(data_dir, tmp_path, "fgsm")).exit_code == 0
    link = tmp_path / "data-link"
    link.symlink_to(Path(data_dir).resolve(), target_is_directory=True)
    for spelling in (link, Path(data_dir).resolve() / ".." / Path(data_dir).resolve().name):
        args = tiny_train_args(spelling, tmp_path, "fgsm", "--resume")
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    other = tmp_path / "other-data"  # another folder (of links to the same files) still differs
    other.mkdir()
    for file in Path(data_dir).resolve().iterdir():
        (other / file.name).symlink_to(file)
    result = CliRunner().invoke(main, tiny_train_args(other, tmp_path, "fgsm", "--resume"))
    assert result.exit_code != 0 and "data_dir" in result.output


def test_runs_lists_runs_with_their_last_metrics(data_dir, tmp_path):
    assert cli(*tiny_train_args(data_dir, tmp_path, "fgsm")).exit_code == 0
    result = cli("runs", "--out", str(tmp_path))
    assert "mini-fgsm-eps8-seed0" in result.output and "pgd2" in result.output
    assert "1/1" in result.output  # epochs done / planned


class _Payload:
    """A pickle that would create a file when unpickled by a full (unsafe) load."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_malicious_checkpoint_does_not_run_its_payload(data_dir, tmp_path):
    assert cli(*tiny_train_args(data_dir, tmp_path, "fgsm")).exit_code == 0
    run = Run(tmp_path / "mini-fgsm-eps8-seed0")
    target = tmp_path / "pwned"
    torch.save({"format": 1, "model": _Payload(str(target))}, run.checkpoint_path(1))
    with pytest.raises(RunError, match="is corrupted or not a robdrop checkpoint"):
        run.load(1)
    assert not target.exists()
    # the same file through an unsafe load would have run the payload: the test can fail
    torch.load(run.checkpoint_path(1), weights_only=False)
    assert target.exists()


@pytest.mark.parametrize("kind", ["examples", "partial", "best", "eval"])
def test_no_run_file_executes_code_when_read(kind, data_dir, tmp_path):
    """Per-example buffers, mid-epoch states, best.pt, and `robdrop eval` read weights only."""
    assert (
        cli(*tiny_train_args(data_dir, tmp_path, "apart", "--on-underfit", "best")).exit_code == 0
    )
    run = Run(tmp_path / "mini-apart-eps8-seed0")
    target = tmp_path / "pwned"
    payload = {"format": 1, "omega": _Payload(str(target))}
    path = {
        "examples": run.examples_path(1),
        "partial": run.partial_path,
        "best": run.best_path,
        "eval": run.checkpoint_path(1),
    }[kind]
    torch.save(payload, path)
    if kind == "eval":
        result = CliRunner().invoke(main, ["eval", str(run.path), "--n", "8", "-a", "clean"])
        assert result.exit_code != 0 and "not a robdrop checkpoint" in result.output
    else:
        read = {"examples": lambda: run.load_examples(1), "partial": run.load_partial,
                "best": run.load_best}[kind]  # fmt: skip
        with pytest.raises(RunError, match="corrupted"):
            read()
    assert not target.exists()


def test_run_json_of_earlier_versions_reads_with_todays_names():
    """Runs made before budgets carried their unit (`eps`) and before options said theirs
    (`step`, `k`) load as today's config, so their folders still open and resume."""
    from robdrop.training.config import TrainConfig, make_config

    old = {"method": "nfgsm", "eps": 4.0, "options": {"k": 1.0, "step": 0.5}, "preset": "mini"}
    cfg = TrainConfig.from_dict(old)
    assert cfg.eps255 == 4.0 and cfg.options == {"noise_in_eps": 1.0, "step_in_eps": 0.5}
    pgd = TrainConfig.from_dict({"method": "pgd10", "eps": 8, "options": {"step": 1}})
    assert pgd.options == {"step255": 1} and pgd.eps_image == 8 / 255
    assert make_config("mini", method="pgd10", eps=6, options={"step": 1}).eps255 == 6
