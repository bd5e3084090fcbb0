"""The evaluation sanity report: each check fires exactly past its threshold, a model whose
BatchNorm statistics are off is caught by judging it in train mode (which leaves them as they
were), and the flags reach Tables 2–4 and summary.md."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from robdrop.analysis.sanity import OK, sanity, sanity_flags, sanity_table
from robdrop.analysis.stats import wilson_interval
from robdrop.attacks import make_attack
from robdrop.attacks.evaluate import accuracy_under
from robdrop.cli import main
from robdrop.data import load_cifar
from robdrop.models import build_model
from robdrop.study import TARGETS, Study
from robdrop.study.method_table import SANITY
from robdrop.study.report import sanity_section

from .conftest import fit_a_little

SOUND = {"clean": 80.0, "pgd20": 40.0, "autoattack": 37.0, "random": 75.0, "clean@train": 78.0}


def test_a_sound_evaluation_passes_and_missing_numbers_skip_their_check():
    assert sanity(SOUND) == OK
    assert sanity({}) == OK
    assert sanity(SOUND, "none") == OK


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"autoattack": 34.9}, "PGD-20 40.0 % vs AutoAttack 34.9 %"),  # PGD-20 overstates
        ({"autoattack": 45.1}, "PGD-20 40.0 % vs AutoAttack 45.1 %"),  # AutoAttack misbehaved
        ({"random": 39.0}, "random noise 39.0 % < PGD-20 40.0 %: broken attack"),
        ({"clean@train": 69.9}, "clean 80.0 % in eval mode vs 69.9 % in train mode"),
    ],
)
def test_each_check_fires_past_its_threshold(change, words):
    flags = sanity_flags({**SOUND, **change})
    assert len(flags) == 1 and flags[0].startswith(words)
    # at the threshold itself nothing fires
    key = next(iter(change))
    edge = {"autoattack": 35.0 if change[key] < 40 else 45.0, "random": 40.0, "clean@train": 70.0}
    assert sanity({**SOUND, key: edge[key]}) == OK


def test_autoattacks_own_flags_are_reported():
    assert sanity(SOUND, "it seems to be a randomized defense!") == (
        "AutoAttack: it seems to be a randomized defense!"
    )


@pytest.fixture(scope="module")
def trained(data_dir: Path) -> torch.nn.Module:
    """Four epochs of SGD on 2,048 training images (~3 s): about 35 % on test images, so its
    train-mode accuracy stands 20 points clear of the broken copy's chance-level eval mode.
    (Fitted to the 256 images of the `cifar` fixture it reached ~20 %, and on 128 test images
    the 10-point check then hung on a couple of images.)"""
    data = load_cifar("cifar10", data_dir, download=False, train_size=2048, val_size=0)
    torch.manual_seed(0)
    return fit_a_little(build_model("prn18", 10, data.mean, data.std, width=4), data, 4, 128)


def broken_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose BatchNorm running means no longer describe the model."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean += 3.0
    return model


def test_train_mode_catches_broken_running_statistics_and_leaves_them(trained, cifar):
    x, y = cifar.test_x[:256], cifar.test_y[:256]
    clean = make_attack("clean", 8 / 255)
    trained = broken_statistics(trained)
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    broken = {
        "clean": 100 * accuracy_under(trained, clean, x, y),
        "clean@train": 100 * accuracy_under(trained, clean, x, y, mode="train"),
    }
    assert all(torch.equal(v, state[k]) for k, v in trained.state_dict().items())
    assert not trained.training
    assert "in train mode" in sanity(broken), broken


def test_tables_and_summary_carry_the_flags(tmp_path, monkeypatch):
    """Table 2's rows from evaluations whose numbers are set here; summary.md lists the flags.
    AutoAttack runs on 200 of the 400 test images, and PGD-20 on those same 200 is what its
    sanity check compares it with."""
    study = Study(tmp_path, "mini", n=400)
    assert study.autoattack_n == 200  # mini's AutoAttack subset of the images
    table2 = TARGETS["table2"]
    accuracies = {**SOUND, "cw20": 38.0, "gauss": 70.0, "autoattack-apgd": 30.0}
    asked = []

    def evaluate(self, run, attacks, epochs="all", eps255=None, images=None):
        asked.append((set(attacks), images))
        n = 400 if images is None else images
        pgd20 = 33.0 if n == 200 else accuracies["pgd20"]  # within 5 points of AA on its images
        rows = [
            {
                "run": "r",
                "attack": a,
                "accuracy": (pgd20 if a == "pgd20" else accuracies[a]) / 100,
                "epoch": 1,
                "n": n,
            }
            for a in attacks
        ]
        frame = pd.DataFrame(rows)
        return frame.assign(
            flags=["zero gradients" if a.startswith("auto") else None for a in attacks]
        )

    class FakeRun:
        """What a table row reads of a run besides its evaluations."""

        config = SimpleNamespace(eval_attack="pgd10")

        def metrics(self) -> pd.DataFrame:
            return pd.DataFrame({"epoch": [1], "seconds": [1.0], "test_pgd10_acc": [0.3]})

    fgsm = study.spec("fgsm")  # one seed of FGSM is the table's only run here
    monkeypatch.setattr(Study, "evaluate", evaluate)
    monkeypatch.setattr(Study, "specs", lambda self, m, preset=None: [fgsm] if m == "fgsm" else [])
    monkeypatch.setattr(Study, "open", lambda self, spec: FakeRun())
    frame = table2.frame(study)
    assert asked == [
        ({*table2.attacks, "random", "clean@train"}, None),
        ({"autoattack-apgd", "pgd20"}, 200),
    ]
    row = frame.iloc[0]
    assert row["method"] == "fgsm" and row["seeds"] == 1
    assert row["autoattack"] == pytest.approx(30.0)  # the subset fills the AutoAttack column
    assert row["pgd20"] == pytest.approx(40.0)  # PGD-20's column: all 400 images
    assert row["autoattack_low"] == pytest.approx(100 * wilson_interval(0.3, 200)[0])
    assert row["pgd20_low"] == pytest.approx(100 * wilson_interval(0.4, 400)[0])
    # 33 % vs 30 % on the same images: no disagreement; AutoAttack's own flag is reported
    assert row[SANITY] == f"seed {fgsm.config.seed}: AutoAttack: zero gradients"
    assert "on 200 of the 400 test images" in table2.table_caption(study)
    frames = {"table2": frame}
    lines = sanity_section(frames)
    assert lines[1] == "## Evaluation sanity"
    assert "- Table 2: 1 of 1 rows flagged:" in lines
    assert f"  - FGSM: {row[SANITY]}" in lines
    sound = {"table2": frame.assign(**{SANITY: [OK] + [None] * (len(frame) - 1)})}
    assert "- Table 2: all 1 rows pass." in sanity_section(sound)
    without_aa = {"table2": sound["table2"].assign(autoattack=float("nan"))}
    assert (
        "- Table 2 (AutoAttack not evaluated: its checks skipped): all 1 rows pass."
        in sanity_section(without_aa)
    )


def test_sanity_table_gives_one_verdict_per_epoch():
    rows = [
        ("r", 1, "clean", 0.8, None),
        ("r", 1, "pgd20", 0.4, None),
        ("r", 1, "autoattack-apgd", 0.3, "none"),
        ("r", 2, "clean", 0.8, None),
        ("r", 2, "pgd20", 0.4, None),
        ("r", 2, "random", 0.7, None),
    ]
    table = pd.DataFrame(rows, columns=["run", "epoch", "attack", "accuracy", "flags"])
    verdicts = sanity_table(table).set_index("epoch")["sanity"]
    assert verdicts[1] == "PGD-20 40.0 % vs AutoAttack 30.0 %: > 5 points"
    assert verdicts[2] == OK


def test_eval_sanity_flags_a_model_with_broken_statistics(trained, data_dir, tmp_path):
    """`robdrop eval --sanity` on a model from elsewhere (the factory of test_export_foreign)."""
    weights = tmp_path / "broken.pt"
    torch.save(broken_statistics(trained).state_dict(), weights)
    args = ["eval", f"tests.test_export_foreign:colleague_model={weights}", "--sanity", "--n",
            "128", "--out", str(tmp_path), "--data-dir", str(data_dir)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    (line,) = [line for line in result.output.splitlines() if line.startswith("sanity, ")]
    assert line.startswith("sanity, broken epoch 0: clean ")
    assert line.endswith("in train mode")
    for attack in ("clean", "pgd20", "random", "clean@train"):
        assert f" {attack} " in result.output
