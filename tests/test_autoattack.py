"""AutoAttack through torchattacks, in the style of torchattacks' tests: properties on real images
and a tiny model, `robdrop eval --attack autoattack` cached, and Tables 2–4's column."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from robdrop.attacks import AutoAttack, make_attack
from robdrop.attacks.base import seeded
from robdrop.attacks.evaluate import accuracy_under
from robdrop.cli import main
from robdrop.data import ImageData
from robdrop.models import build_model
from robdrop.study import TARGETS, Study
from robdrop.study.tables import presentable

from .conftest import fit_a_little, tiny_train_args

pytest.importorskip("torchattacks", reason="needs the compare extra: pip install robdrop[compare]")

EPS = 8 / 255


@pytest.fixture(scope="module")
def trained(cifar: ImageData) -> torch.nn.Module:
    """A width-4 PreAct ResNet-18 fitted a little to 256 images, so attacks have work to do."""
    torch.manual_seed(0)
    return fit_a_little(build_model("prn18", 10, cifar.mean, cifar.std, width=4), cifar)


def test_delta_stays_in_the_ball_and_breaks_images(trained, test_batch):
    x, y = test_batch
    x_before = x.clone()
    with seeded(0, x.device):
        delta = make_attack("autoattack", EPS)(trained, x, y)
    assert delta.abs().max() <= EPS + 1e-6
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1
    assert torch.equal(x, x_before)  # input not mutated
    assert not delta.requires_grad
    with torch.no_grad():
        clean, attacked = (trained(v).argmax(1) == y for v in (x, x + delta))
    assert clean.sum() > 0, "no image is classified correctly: nothing to attack"
    assert attacked.sum() < clean.sum()
    assert not (attacked & ~clean).any()  # an attack never repairs a misclassified image


def test_seeded_calls_give_the_same_delta(trained, test_batch):
    x, y = test_batch
    attack = make_attack("autoattack", EPS)
    deltas = []
    for _ in range(2):
        with seeded(3, x.device):
            deltas.append(attack(trained, x, y))
    assert deltas[0].abs().sum() > 0
    assert torch.equal(*deltas)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_model_mode_and_statistics_are_restored(mode, trained, test_batch):
    x, y = test_batch
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    trained.train(mode == "train")
    try:
        make_attack("autoattack", EPS)(trained, x[:8], y[:8])
        assert trained.training == (mode == "train")
        assert all(torch.equal(v, state[k]) for k, v in trained.state_dict().items())
    finally:
        trained.eval()


def test_autoattack_is_at_most_pgd20_on_the_same_images(trained, cifar):
    # at 1/255 PGD-20 leaves some of these images standing, so the comparison is not 0 ≤ 0
    eps = 1 / 255
    x, y = cifar.test_x[:128], cifar.test_y[:128]
    acc = {}
    for spec in ("pgd20", "autoattack"):
        with seeded(0, x.device):
            acc[spec] = accuracy_under(trained, make_attack(spec, eps), x, y)
    assert acc["pgd20"] > 0
    assert acc["autoattack"] <= acc["pgd20"]


def test_autoattack_is_an_evaluation_only():
    with pytest.raises(ValueError, match="eval mode only"):
        make_attack("autoattack", EPS, mode="train")
    attack = make_attack("AutoAttack", EPS)
    assert isinstance(attack, AutoAttack)
    assert attack.describe().startswith("AutoAttack[standard Linf, torchattacks ")


@pytest.fixture(scope="module")
def tiny_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("aa-run")
    result = CliRunner().invoke(main, tiny_train_args(data_dir, out, "fgsm"))
    assert result.exit_code == 0, result.output
    return out / "mini-fgsm-eps8-seed0"


def test_eval_command_writes_the_row_and_caches_it(tiny_run, tmp_path, monkeypatch):
    args = ["eval", str(tiny_run), "-a", "pgd20", "-a", "autoattack", "--n", "32", "--seed", "1"]
    first = CliRunner().invoke(main, [*args, "--out-csv", str(tmp_path / "first.csv")])
    assert first.exit_code == 0, first.output + repr(first.exception)
    table = pd.read_csv(tmp_path / "first.csv").set_index("attack")
    assert list(table.index) == ["pgd20", "autoattack"]
    row = table.loc["autoattack"]
    assert row["n"] == 32 and row["seed"] == 1 and row["eps"] == 8 and row["epoch"] == 1
    assert row["description"].startswith("AutoAttack[standard Linf")
    assert 0 <= row["accuracy"] <= table.loc["pgd20", "accuracy"]

    def fail(*args, **kwargs):
        raise AssertionError("AutoAttack ran again instead of reading the cache")

    monkeypatch.setattr(AutoAttack, "perturb", fail)
    second = CliRunner().invoke(main, [*args, "--out-csv", str(tmp_path / "second.csv")])
    assert second.exit_code == 0, second.output + repr(second.exception)
    assert pd.read_csv(tmp_path / "second.csv").equals(pd.read_csv(tmp_path / "first.csv"))


def test_missing_torchattacks_is_one_sentence(tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # `import torchattacks` now fails
    with pytest.raises(ImportError, match=r"needs torchattacks: pip install robdrop\[compare\]"):
        make_attack("autoattack", EPS)
    args = ["eval", str(tiny_run), "--attack", "autoattack", "--preset", "mini"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: the autoattack attack needs torchattacks: pip install robdrop[compare]"
    )


def test_tables_2_to_4_have_the_autoattack_column(tmp_path):
    study = Study(tmp_path, "mini")
    table2, table6 = TARGETS["table2"], TARGETS["table6"]
    assert table2.evaluated_attacks(study)[-1] == "autoattack"
    no_aa = Study(tmp_path, "mini", autoattack=False)
    assert "autoattack" not in table2.evaluated_attacks(no_aa)
    assert "autoattack" not in table6.evaluated_attacks(study)
    # a table of the paper's rows only (no such runs here): the column is there, empty, shown "–"
    shown = presentable(TARGETS["table3"].frame(study))
    assert list(shown.columns[:6]) == [
        "method",
        "source",
        "clean (%)",
        "PGD-20 (%)",
        "C&W-20 (%)",
        "AutoAttack (%)",
    ]
    assert set(shown["AutoAttack (%)"]) == {"–"}


def test_reproduce_without_torchattacks_says_so_and_leaves_the_column_empty(
    monkeypatch, data_dir, tmp_path
):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torchattacks" else find_spec(name, *a),
    )
    args = ["figures", "--preset", "mini", "--out", str(tmp_path / "runs"), "--only", "table3",
            "--figures-dir", str(tmp_path / "fig"), "--data-dir", str(data_dir)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "AutoAttack column left empty: torchattacks is not installed" in result.output
    assert (tmp_path / "fig" / "table3.md").is_file()
