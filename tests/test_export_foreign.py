"""Checkpoints others can load (`robdrop export`) and models robdrop did not train (a factory and
a state dict): an export gives the run's logits and accuracies back, in robdrop and in a clean
Python process without its training code; pyautoattack's packaged standard ResNet-18 loads
through the same path and is as fragile as a standard model is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from robdrop.analysis import ForeignModel, evaluate_run, parse_foreign, val_best_epoch
from robdrop.cli import main
from robdrop.models import build_model
from robdrop.training.runs import Run

from .conftest import REPO, tiny_train_args

# a factory in a test module: what a colleague's model definition looks like to robdrop
FACTORY = "tests.test_export_foreign:colleague_model"


def colleague_model() -> torch.nn.Module:
    """A tiny PreAct ResNet-18 as someone else might define it: a factory without arguments."""
    return build_model("prn18", 10, (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616), width=4)


def cli(*args: str) -> str:
    """Run robdrop's CLI in-process; its output (the test fails on a non-zero exit)."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def cli_error(*args: str) -> str:
    """The one line a failing command prints (exit status 1, no traceback)."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A seconds-long real FGSM run of 2 epochs, every checkpoint kept."""
    out = tmp_path_factory.mktemp("runs")
    cli(*tiny_train_args(data_dir, out, "fgsm", "--save-every-epoch", "--epochs", "2"))
    return Run(out / "mini-fgsm-eps8-seed0")


@pytest.fixture(scope="module")
def exported(run: Run, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`robdrop export RUN --epoch 1` (not the last epoch: the choice must be honoured)."""
    out = tmp_path_factory.mktemp("exports")
    cli("export", str(run.path), "--epoch", "1", "--out-dir", str(out))
    return out / f"{run.name}-epoch001.pt", out / f"{run.name}-epoch001.json"


def test_export_gives_identical_logits_in_a_fresh_model(run, exported, test_batch):
    weights, card_path = exported
    card = json.loads(card_path.read_text())
    fresh = build_model(**card["factory_kwargs"])
    fresh.load_state_dict(torch.load(weights, weights_only=True))
    trained, _ = run.load(1)
    x, _ = test_batch
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), trained(x))
    # and not the last epoch's weights
    last, _ = run.load(2)
    with torch.no_grad():
        assert not torch.equal(last(x), trained(x))


def test_card_says_what_the_model_is(run, exported):
    weights, card_path = exported
    card = json.loads(card_path.read_text())
    assert card["weights"] == weights.name
    assert (card["architecture"], card["width"], card["dataset"]) == ("prn18", 4, "cifar10")
    assert (card["eps255"], card["method"], card["epoch"]) == (8.0, "fgsm", 1)
    metrics = run.metrics().set_index("epoch").loc[1]
    quick = card["accuracy"]["quick_check"]
    assert quick["clean"] == metrics["test_clean_acc"]
    assert quick["pgd2"] == metrics["test_pgd2_acc"] and quick["images"] == 64
    assert re.fullmatch(r"[0-9a-f]{40}", card["robdrop"]["commit"])


def test_export_loads_in_a_clean_process_without_training_code(run, exported, test_batch):
    weights, card_path = exported
    card = json.loads(card_path.read_text())
    x, _ = test_batch
    torch.save(x, weights.parent / "x.pt")
    script = "\n".join(
        [
            "import sys",
            *card["build"],
            "with torch.no_grad():",
            "    torch.save(model(torch.load('x.pt', weights_only=True)), 'logits.pt')",
            "assert not [m for m in sys.modules if m.startswith(('robdrop.training',"
            " 'robdrop.methods', 'robdrop.analysis'))], sorted(sys.modules)",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=weights.parent, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    trained, _ = run.load(1)
    with torch.no_grad():
        expected = trained(x)
    assert torch.equal(torch.load(weights.parent / "logits.pt", weights_only=True), expected)


def test_an_export_card_gives_the_run_accuracies_through_the_foreign_path(run, exported, tmp_path):
    _, card_path = exported
    foreign = parse_foreign(str(card_path), tmp_path)
    assert isinstance(foreign, ForeignModel)
    kw = {"n": 48, "seed": 2, "device": "cpu"}
    ours = evaluate_run(run, ["clean", "pgd5"], [1], **kw)
    theirs = evaluate_run(foreign, ["clean", "pgd5"], "last", data_dir=run.config.data_dir, **kw)
    assert theirs["epoch"].tolist() == [1, 1]
    assert theirs["accuracy"].tolist() == ours["accuracy"].tolist()
    # and the factory path with the exported weights, through the command line
    csv = tmp_path / "eval.csv"
    spec = f"{FACTORY}={card_path.with_suffix('.pt')}"
    cli("eval", spec, "-a", "clean", "-a", "pgd5", "--n", "48", "--seed", "2", "--out",
        str(tmp_path), "--data-dir", run.config.data_dir, "--out-csv", str(csv))  # fmt: skip
    assert pd.read_csv(csv)["accuracy"].tolist() == ours["accuracy"].tolist()


def test_a_foreign_model_in_gap_and_crossacc(run, exported, tmp_path):
    _, card_path = exported
    common = ["--n", "32", "--out", str(tmp_path), "--data-dir", run.config.data_dir]
    theirs, ours = tmp_path / "theirs.csv", tmp_path / "ours.csv"
    # an export of an FGSM run: its own generator is FGSM, so the gaps agree
    cli("gap", "--from", str(card_path), *common, "--out-csv", str(theirs))
    cli("gap", "--from", str(run.path), "--epochs", "1", *common, "--out-csv", str(ours))
    assert pd.read_csv(theirs)["gap"].tolist() == pd.read_csv(ours)["gap"].tolist()
    # the foreign model as θ_A, the fixed model attacked by perturbations of the run's epochs
    cli("crossacc", "--model", str(card_path), "--source", str(run.path), *common,
        "--out-csv", str(theirs))  # fmt: skip
    cli("crossacc", "--model", f"{run.path}@1", "--source", str(run.path), *common,
        "--out-csv", str(ours))  # fmt: skip
    columns = ["epoch", "accuracy", "random_accuracy"]
    assert pd.read_csv(theirs)[columns].equals(pd.read_csv(ours)[columns])
    # and as the source whose FGSM perturbations attack a fixed model
    cli("crossacc", "--model", f"{run.path}@2", "--source", str(card_path), *common,
        "--out-csv", str(theirs))  # fmt: skip
    cli("crossacc", "--model", f"{run.path}@2", "--source", str(run.path), "--epochs", "1",
        *common, "--out-csv", str(ours))  # fmt: skip
    assert pd.read_csv(theirs)[columns].equals(pd.read_csv(ours)[columns])


def test_export_best_is_the_validation_choice(run, tmp_path):
    cli("export", str(run.path), "--epoch", "best", "--out-dir", str(tmp_path))
    (card_path,) = tmp_path.glob("*.json")
    card = json.loads(card_path.read_text())
    assert card["epoch"] == val_best_epoch(run, device="cpu")
    assert card["taken_from"] == "best by validation PGD-20"
    assert card_path.with_suffix(".pt").is_file()


def test_pyautoattack_standard_resnet18_is_accurate_and_fragile(data_dir, tmp_path):
    """The packaged standard (not adversarially trained) CIFAR-10 ResNet-18, loaded through
    its own model definition: most clean images right, PGD breaks nearly all."""
    package = pytest.importorskip("pyautoattack", reason="needs pip install robdrop[autoattack]")
    weights = Path(package.__file__).parent / "examples" / "model_test.pt"
    spec = f"pyautoattack.examples.resnet:ResNet18={weights}"
    csv = tmp_path / "eval.csv"
    cli("eval", spec, "-a", "clean", "-a", "pgd2", "--n", "32", "--out", str(tmp_path),
        "--data-dir", str(data_dir), "--out-csv", str(csv))  # fmt: skip
    acc = pd.read_csv(csv).set_index("attack")["accuracy"]
    assert acc["clean"] >= 0.75
    assert acc["pgd2"] <= 0.1
    assert not (weights.parent / "analysis").exists()  # cached under --out, not in site-packages
    assert list((tmp_path / "foreign").glob("model_test-*/analysis"))


def test_foreign_model_errors_are_one_sentence(run, exported, tmp_path):
    weights, card_path = exported
    common = ["--n", "8", "--out", str(tmp_path), "--data-dir", run.config.data_dir]
    error = cli_error("eval", f"no_such.module:f={weights}", *common)
    assert error == "Error: model factory 'no_such.module:f': cannot import no_such.module " + (
        "(No module named 'no_such')"
    )
    error = cli_error("eval", f"tests.test_export_foreign:nothing={weights}", *common)
    assert "has no function nothing" in error
    error = cli_error("eval", f"{FACTORY}={tmp_path / 'missing.pt'}", *common)
    assert error.endswith("missing.pt does not exist")
    error = cli_error("eval", f"{FACTORY}={card_path}", *common)
    assert "is not a weights file that torch.load(weights_only=True) can read" in error
    wide = tmp_path / "wide.pt"
    torch.save(build_model("prn18", 10, (0, 0, 0), (1, 1, 1), width=8).state_dict(), wide)
    error = cli_error("eval", f"{FACTORY}={wide}", *common)
    assert "does not fit the model tests.test_export_foreign:colleague_model builds" in error
    assert "wrong shape" in error


class _Payload:
    """Pickles to a call that creates a file: what a malicious weights file would do."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_foreign_weights_never_run_code(run, tmp_path):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"conv.weight": _Payload(str(target))}, evil)
    common = ["--n", "8", "--out", str(tmp_path), "--data-dir", run.config.data_dir]
    assert "weights_only" in cli_error("eval", f"{FACTORY}={evil}", *common)
    assert not target.exists()
