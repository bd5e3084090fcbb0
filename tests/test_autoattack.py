"""AutoAttack, the authors' (pyautoattack: `autoattack`, `autoattack-apgd`) and torchattacks'
(`autoattack-ta`), in the style of torchattacks' tests: properties on real images and a tiny
model, AutoAttack's own flags in `robdrop eval`, one-sentence errors without the extras, and
Tables 2–4's column."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from robdrop.attacks import ReferenceAutoAttack, TorchattacksAutoAttack, make_attack
from robdrop.attacks.base import seeded
from robdrop.attacks.evaluate import accuracy_under
from robdrop.cli import main
from robdrop.data import ImageData
from robdrop.models import build_model
from robdrop.study import TARGETS, Study
from robdrop.study.tables import presentable

from .conftest import fit_a_little, tiny_train_args

EPS = 8 / 255
# spec -> the module it needs and the extra that installs it
IMPLEMENTATIONS = {
    "autoattack": ("pyautoattack", "autoattack"),
    "autoattack-apgd": ("pyautoattack", "autoattack"),
    "autoattack-ta": ("torchattacks", "compare"),
}


def installed(spec: str) -> str:
    """`spec`, skipping the test when its implementation is not installed."""
    module, extra = IMPLEMENTATIONS[spec]
    pytest.importorskip(module, reason=f"needs pip install robdrop[{extra}]")
    return spec


@pytest.fixture(scope="module")
def trained(cifar: ImageData) -> torch.nn.Module:
    """A width-4 PreAct ResNet-18 fitted a little to 256 images, so attacks have work to do."""
    torch.manual_seed(0)
    return fit_a_little(build_model("prn18", 10, cifar.mean, cifar.std, width=4), cifar)


@pytest.mark.parametrize("spec", IMPLEMENTATIONS)
def test_delta_stays_in_the_ball_and_breaks_images(spec, trained, test_batch):
    x, y = test_batch
    x_before = x.clone()
    with seeded(0, x.device):
        delta = make_attack(installed(spec), EPS)(trained, x, y)
    assert delta.abs().max() <= EPS + 1e-6
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1
    assert torch.equal(x, x_before)  # input not mutated
    assert not delta.requires_grad
    with torch.no_grad():
        clean, attacked = (trained(v).argmax(1) == y for v in (x, x + delta))
    assert clean.sum() > 0, "no image is classified correctly: nothing to attack"
    assert attacked.sum() < clean.sum()
    assert not (attacked & ~clean).any()  # an attack never repairs a misclassified image


@pytest.mark.parametrize("spec", ["autoattack", "autoattack-ta"])
def test_seeded_calls_give_the_same_delta(spec, trained, test_batch):
    x, y = test_batch[0][:16], test_batch[1][:16]
    attack = make_attack(installed(spec), EPS)
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
        make_attack(installed("autoattack"), EPS)(trained, x[:8], y[:8])
        assert trained.training == (mode == "train")
        assert all(torch.equal(v, state[k]) for k, v in trained.state_dict().items())
    finally:
        trained.eval()


@pytest.mark.parametrize("spec", ["autoattack-apgd", "autoattack-ta"])
def test_autoattack_is_at_most_pgd20_on_the_same_images(spec, trained, cifar):
    # at 1/255 PGD-20 leaves some of these images standing, so the comparison is not 0 ≤ 0
    eps = 1 / 255
    x, y = cifar.test_x[:48], cifar.test_y[:48]
    acc = {}
    for name in ("pgd20", installed(spec)):
        with seeded(0, x.device):
            acc[name] = accuracy_under(trained, make_attack(name, eps), x, y)
    assert acc["pgd20"] > 0
    assert acc[spec] <= acc["pgd20"]


DESCRIPTIONS = {
    "autoattack": (
        ReferenceAutoAttack,
        "AutoAttack[standard Linf: APGD-CE, APGD-T, FAB-T, Square, 100 it.",
    ),
    "autoattack-apgd": (ReferenceAutoAttack, "AutoAttack[apgd Linf: APGD-CE, APGD-T, 100 it."),
    "autoattack-ta": (TorchattacksAutoAttack, "AutoAttack[standard Linf, torchattacks "),
}


@pytest.mark.parametrize("spec", IMPLEMENTATIONS)
def test_each_implementation_says_which_it_is_and_evaluates_only(spec):
    cls, prefix = DESCRIPTIONS[spec]
    attack = make_attack(installed(spec).upper(), EPS)
    assert isinstance(attack, cls)
    assert attack.describe().startswith(prefix)
    assert ("10 it." in attack.describe()) == (spec == "autoattack-ta")
    with pytest.raises(ValueError, match="eval mode only"):
        make_attack(spec, EPS, mode="train")


@pytest.fixture(scope="module")
def tiny_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("aa-run")
    result = CliRunner().invoke(main, tiny_train_args(data_dir, out, "fgsm"))
    assert result.exit_code == 0, result.output
    return out / "mini-fgsm-eps8-seed0"


def test_eval_command_reports_flags_writes_the_row_and_caches_it(tiny_run, tmp_path, monkeypatch):
    spec = installed("autoattack")
    args = ["eval", str(tiny_run), "-a", "pgd20", "-a", spec, "--n", "32", "--seed", "1"]
    first = CliRunner().invoke(main, [*args, "--out-csv", str(tmp_path / "first.csv")])
    assert first.exit_code == 0, first.output + repr(first.exception)
    table = pd.read_csv(tmp_path / "first.csv").set_index("attack")
    assert list(table.index) == ["pgd20", "autoattack"]
    row = table.loc["autoattack"]
    assert row["n"] == 32 and row["seed"] == 1 and row["eps"] == 8 and row["epoch"] == 1
    assert row["description"].startswith("AutoAttack[standard Linf")
    assert 0 <= row["accuracy"] <= table.loc["pgd20", "accuracy"]
    # AutoAttack's own checks ran and raised nothing on an ordinary model; PGD makes none
    assert row["flags"] == "none" and pd.isna(table.loc["pgd20", "flags"])
    assert "autoattack checks, mini-fgsm-eps8-seed0 epoch 1: none" in first.output

    def fail(*args, **kwargs):
        raise AssertionError("AutoAttack ran again instead of reading the cache")

    monkeypatch.setattr(ReferenceAutoAttack, "perturb", fail)
    second = CliRunner().invoke(main, [*args, "--out-csv", str(tmp_path / "second.csv")])
    assert second.exit_code == 0, second.output + repr(second.exception)
    assert pd.read_csv(tmp_path / "second.csv").equals(pd.read_csv(tmp_path / "first.csv"))


class NoisyNet(torch.nn.Module):
    """A randomised defence: Gaussian noise on its logits in every mode."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1))
        return logits + torch.randn_like(logits)


def noisy_net() -> torch.nn.Module:
    """The factory `robdrop eval` imports (tests.test_autoattack:noisy_net)."""
    return NoisyNet()


def test_autoattack_flags_a_randomised_model_in_the_eval_output(data_dir, tmp_path):
    installed("autoattack")
    weights = tmp_path / "noisy.pt"
    torch.save(NoisyNet().state_dict(), weights)
    spec = f"tests.test_autoattack:noisy_net={weights}"
    args = ["eval", spec, "-a", "autoattack-apgd", "--n", "8", "--out", str(tmp_path),
            "--data-dir", str(data_dir), "--out-csv", str(tmp_path / "noisy.csv")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    flags = pd.read_csv(tmp_path / "noisy.csv")["flags"].item()
    assert "randomized defense" in flags
    assert "randomized defense" in result.output


@pytest.mark.parametrize("spec", IMPLEMENTATIONS)
def test_a_missing_implementation_is_one_sentence(spec, tiny_run, monkeypatch):
    module, extra = IMPLEMENTATIONS[spec]
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    message = f"the {spec} attack needs {module}: pip install robdrop[{extra}]"
    with pytest.raises(ImportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_attack(spec, EPS)
    args = ["eval", str(tiny_run), "--attack", spec, "--preset", "mini"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {message}"


def test_tables_2_to_4_have_the_autoattack_column(tmp_path):
    study = Study(tmp_path, "mini")
    table2, table6 = TARGETS["table2"], TARGETS["table6"]
    # mini: the reference's APGD-CE and APGD-T (the CPU budget); the paper presets: standard
    assert table2.evaluated_attacks(study)[4] == "autoattack-apgd"
    assert TARGETS["table3"].evaluated_attacks(Study(tmp_path, "paper-cifar10-wrn34"))[4] == (
        "autoattack"
    )
    # the subsets (of the attacks, of the test images) are stated in the caption of the tables
    assert table2.table_caption(study) == (
        "Table 2: PreAct ResNet-18 on CIFAR-10 (AutoAttack: autoattack-apgd, the authors' "
        "APGD-CE and APGD-T only, 100 iterations each; on 200 of the 1,000 test images)"
    )
    assert table2.table_caption(Study(tmp_path, "mini", autoattack_n=1000)).endswith("each)")
    whole = Study(tmp_path, "paper-cifar10-prn18", autoattack_n=2000)  # n: the whole test set
    assert table2.table_caption(whole) == f"{table2.caption} (AutoAttack: on 2,000 test images)"
    assert table2.table_caption(Study(tmp_path, "paper-cifar10-prn18")) == table2.caption
    no_aa = Study(tmp_path, "mini", autoattack=False)
    assert table2.table_caption(no_aa) == table2.caption
    assert not {"autoattack", "autoattack-apgd"} & set(table2.evaluated_attacks(no_aa))
    assert not {"autoattack", "autoattack-apgd"} & set(table6.evaluated_attacks(study))
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
    assert set(shown["evaluation sanity"]) == {"–"}


def test_reproduce_without_pyautoattack_says_so_and_leaves_the_column_empty(
    monkeypatch, data_dir, tmp_path
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyautoattack" else find_spec(name, *a),
    )
    args = ["figures", "--preset", "mini", "--out", str(tmp_path / "runs"), "--only", "table3",
            "--figures-dir", str(tmp_path / "fig"), "--data-dir", str(data_dir)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "AutoAttack column left empty: pyautoattack is not installed" in result.output
    assert (tmp_path / "fig" / "table3.md").is_file()
