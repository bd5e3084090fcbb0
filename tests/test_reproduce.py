"""The whole study on a tiny real fixture: `robdrop reproduce` trains every run, draws every
figure and table with the right content, resumes without redoing anything, and `robdrop
figures` redraws from the runs alone."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from matplotlib.container import ErrorbarContainer

from robdrop.analysis.common import fixed_test_subset
from robdrop.analysis.stats import Z95, wilson_interval
from robdrop.attacks import PGD, ReferenceAutoAttack, make_attack
from robdrop.attacks.base import seeded
from robdrop.attacks.evaluate import accuracy_under
from robdrop.cli import main
from robdrop.study import TARGETS, Study
from robdrop.study.study import COSTLY, RunSpec, collapse_epoch, lasting_collapse
from robdrop.training.runs import find_runs, run_costs
from tests.conftest import import_benchmark

FIGURES = [n for n in TARGETS if n.startswith("figure")]
TABLES = [n for n in TARGETS if n.startswith("table")]

# seconds-long runs: 256 training images, width 4, 2 epochs; evaluations on 64 test images
TINY = {
    "train_size": 256,
    "val_size": 64,
    "width": 4,
    "epochs": 2,
    "eval_size": 64,
    "eval_attack": "pgd2",
    "batch_size": 64,
}
SWEEP = ("4", "8")


def study_args(data_dir: Path, runs: Path, figures: Path, *extra: str) -> list[str]:
    """The tiny study without AutoAttack: its Square attack alone would take ~100 s here."""
    settings = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    return [
        "--preset", "mini", "--out", str(runs), "--figures-dir", str(figures),
        "--data-dir", str(data_dir), "--n", "64", "--sweep-eps", ",".join(SWEEP),
        "--sweep-method", "ffgsm", "--sweep-method", "apart", "--no-autoattack",
        "--seeds", "1,2", "--few-seeds", "1", *settings, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def study_dirs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A complete tiny reproduction: (runs folder, figures folder)."""
    root = tmp_path_factory.mktemp("study")
    runs, figures = root / "runs", root / "figures"
    result = CliRunner().invoke(main, ["reproduce", *study_args(data_dir, runs, figures)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return runs, figures


def test_reproduce_writes_every_figure_and_table(study_dirs: tuple[Path, Path]) -> None:
    runs, figures = study_dirs
    names = ["figure1a", "figure1b", "figure2", "figure3", "figure4", "figure5"]
    for name in names:
        for suffix in ("png", "pdf"):
            assert (figures / f"{name}.{suffix}").stat().st_size > 1000
    study = Study(runs, "mini", n=64, sweep_methods=("ffgsm", "apart"))
    for name in FIGURES:  # the numbers each figure plots, beside it
        written = pd.read_csv(figures / f"{name}.csv")
        pd.testing.assert_frame_equal(written, TARGETS[name].frame(study), check_dtype=False,
                                      rtol=1e-5)  # fmt: skip
    for name in TABLES:
        assert (figures / f"{name}.md").read_text().startswith("### Table")
        assert "\\begin{table}" in (figures / f"{name}.tex").read_text()
    summary = (figures / "summary.md").read_text()
    assert "## The paper's claims at this scale" in summary and "## Table 2" in summary
    for claim in ("FGSM's PGD-20 accuracy collapses", "APART does not collapse", "1/4 of PGD-10"):
        assert claim in summary
    # the runs' cost from their own records, whichever invocation trained them
    costs = run_costs(find_runs(runs))
    total = costs["train_min"].sum() + costs["eval_min"].sum()
    assert f"- work, from the records: {len(costs)} runs, {total:.1f} run-minutes" in summary
    timings = pd.read_csv(figures / "timings.csv")
    assert set(FIGURES) | set(TABLES) <= set(timings["name"])
    # the core targets are finished before the ε sweep starts
    order = list(timings["name"])
    assert max(order.index(t) for t in ("figure1", "table2", "table6")) < order.index("figure5")
    methods = {r.config.method_key for r in find_runs(runs)}
    expected = {"fgsm", "fgsm+", "ffgsm", "pgd10", "pgd5", "free8", "atta10", "apart"}
    assert methods == expected | {"apart-noinit"}
    # single-step methods under both seeds, the costly ones under the first (--few-seeds 1);
    # the ε sweep's other ε under the first seed only
    seeds: dict[str, set[int]] = {}
    for run in find_runs(runs):
        if run.config.eps255 == 8.0:
            seeds.setdefault(run.config.method_key, set()).add(run.config.seed)
    for method in expected | {"apart-noinit"}:
        assert seeds[method] == ({1} if method in COSTLY else {1, 2}), method
    assert {r.config.seed for r in find_runs(runs) if r.config.eps255 == 4.0} == {1}
    assert json.loads((runs / "study.json").read_text())["mini"] == {
        "seeds": [1, 2],
        "few_seeds": 1,
    }
    assert "training seeds: 1, 2 (pgd10, pgd5, free8, atta10: 1)" in summary
    assert "seeds)" in summary  # verdicts say in how many seeds a claim held
    for run in find_runs(runs):
        assert run.epochs() == [1, 2], f"{run.name} lacks per-epoch checkpoints"


def measured(study: Study, spec: RunSpec, attack: str) -> float:
    """The accuracy of `spec`'s last checkpoint under `attack` on the study's test images."""
    run = study.open(spec)
    model, _ = run.load(run.epochs()[-1])
    x, y = fixed_test_subset(run, study.n, study.seed)
    with seeded(study.seed, torch.device("cpu")):
        return accuracy_under(
            model, make_attack(attack, 8 / 255), x, y, batch_size=run.config.eval_batch_size
        )


def test_tables_hold_our_rows_and_the_paper_reference(study_dirs: tuple[Path, Path]) -> None:
    runs, _ = study_dirs
    study = Study(runs, "mini", n=64, autoattack=False)
    table2 = TARGETS["table2"].frame(study)
    ours = table2[table2["source"] == "robdrop mini"].set_index("method")
    assert list(ours.index) == ["fgsm", "ffgsm", "free8", "pgd10", "atta10", "apart"]
    # each column is its attack, measured here without the study's machinery: the last
    # checkpoint, the study's 64 images, randomness seeded as every evaluation is. (Not PGD-20 ≤
    # clean: as in the reference code, PGD updates every image and is judged where it ends, so on
    # these chance-level tiny models it can turn a wrong prediction right.)
    for method in ours.index:
        for column in ("clean", "pgd20", "cw20", "gauss"):
            by_seed = [measured(study, spec, column) for spec in study.specs(method)]
            assert ours.loc[method, column] == pytest.approx(100 * sum(by_seed) / len(by_seed))
    assert ours["autoattack"].isna().all()  # --no-autoattack: the column is there, empty
    assert " AutoAttack (%) " in (study_dirs[1] / "table2.md").read_text()
    assert (ours["seconds"] > 0).all()
    # over seeds (read from study.json: two for single-step methods, one for the costly ones)
    assert ours["seeds"].to_dict() == {
        "fgsm": 2, "ffgsm": 2, "free8": 1, "pgd10": 1, "atta10": 1, "apart": 2
    }  # fmt: skip
    assert ours.loc[["fgsm", "ffgsm", "apart"], "pgd20_std"].notna().all()
    assert ours.loc[["free8", "pgd10", "atta10"], "pgd20_std"].isna().all()
    for column in ("clean", "pgd20"):
        assert (ours[f"{column}_low"] <= ours[column]).all()
        assert (ours[column] <= ours[f"{column}_high"]).all()
    fgsm = [
        TARGETS["table2"].seed_row(study, spec, study.open(spec)) for spec in study.specs("fgsm")
    ]
    assert ours.loc["fgsm", "pgd20"] == pytest.approx(50 * (fgsm[0]["pgd20"] + fgsm[1]["pgd20"]))
    assert ours["collapse"].str.match(r"^[0-2]/[12]").all()
    shown = (study_dirs[1] / "table2.md").read_text()
    assert " ± " in shown and " [" in shown
    paper = table2[table2["source"] == "paper Table 2"].set_index("method")
    assert paper.loc["apart", "pgd20"] == 49.30
    assert paper["autoattack"].isna().all()  # the paper reports no AutoAttack
    table6 = TARGETS["table6"].frame(study)
    assert list(table6[table6["source"] == "robdrop mini"]["method"]) == [
        "apart",
        "fgsm+",
        "apart-noinit",
    ]
    # no WRN-34-10, CIFAR-100 or ImageNet runs here: those tables are the paper's, labelled
    for name in ("table3", "table4", "table5"):
        assert set(TARGETS[name].frame(study)["source"]) == {
            f"paper {name.replace('table', 'Table ')}"
        }


def test_autoattack_column_is_evaluated_on_the_pgd20_images(
    study_dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With AutoAttack's δ replaced by PGD-20's, its column must equal PGD-20's: the same last
    checkpoint, images and seed. (AutoAttack itself is tested in test_autoattack.py; the real
    one would take ~100 s on these runs.) A copy keeps the fixture's cache clean; copytree
    keeps modification times, so the copy's cached evaluations stay valid."""
    pytest.importorskip("pyautoattack", reason="needs the autoattack extra")
    runs = shutil.copytree(study_dirs[0], tmp_path / "runs")
    pgd20 = make_attack("pgd20", 8 / 255)
    monkeypatch.setattr(ReferenceAutoAttack, "perturb", lambda self, *args: pgd20.perturb(*args))
    table2 = TARGETS["table2"].frame(Study(runs, "mini", n=64))
    ours = table2[table2["source"] == "robdrop mini"]
    assert ours["pgd20"].notna().all()
    assert ours["autoattack"].tolist() == ours["pgd20"].tolist()
    # on fewer images than the other columns: PGD-20's accuracy on those first 32
    study = Study(runs, "mini", n=64, autoattack_n=32)
    fewer = TARGETS["table2"].frame(study).set_index("method")["autoattack"].dropna()
    for method, accuracy in fewer.items():
        on_32 = [
            study.evaluate(study.open(spec), ("pgd20",), "last", images=32)["accuracy"].item()
            for spec in study.specs(method)
        ]
        assert accuracy == pytest.approx(100 * sum(on_32) / len(on_32))


def test_figure_frames_have_their_series(study_dirs: tuple[Path, Path]) -> None:
    runs, _ = study_dirs
    study = Study(runs, "mini", n=64)
    fig1 = TARGETS["figure1"].frame(study)
    assert set(fig1["series"]) == {
        "Acc(θ_PGD-10, f_FGSM(θ_FGSM^(i)))",
        "Acc(θ_PGD-10, f_FGSM+(θ_FGSM+^(i)))",
        "Acc(θ_PGD-10, f_Random)",
    }
    assert sorted(fig1["epoch"].unique()) == [1, 2]
    assert all(sorted(seeds) == [1, 2] for seeds in fig1.groupby("series")["train_seed"].unique())
    fig2 = TARGETS["figure2"].frame(study)
    assert set(fig2["method"]) == {"fgsm", "pgd10", "apart"}
    sizes = fig2.groupby(["method", "quantity"]).size()
    assert sizes.loc["pgd10"].eq(2).all()  # 2 epochs × its one seed
    assert sizes.loc[["fgsm", "apart"]].eq(4).all()  # 2 epochs × 2 seeds
    fig3 = TARGETS["figure3"].frame(study)
    assert set(fig3["pair"]) == {
        "G_FGSM→PGD-10",
        "G_FGSM+→PGD-10",
        "G_APART→PGD-10",
        "G_PGD-5→PGD-20",
    }
    assert set(fig3.loc[fig3["panel"] == "b", "pair"]) == {"G_PGD-5→PGD-20"}
    assert set(fig3.loc[fig3["pair"] == "G_PGD-5→PGD-20", "train_seed"]) == {1}
    assert set(fig3.loc[fig3["pair"] == "G_FGSM→PGD-10", "train_seed"]) == {1, 2}
    fig4 = TARGETS["figure4"].frame(study)
    assert {"omega", "input"} <= set(fig4["step"]) and len(fig4["step"].unique()) == 10
    assert set(fig4["train_seed"]) == {1, 2}
    fig5 = TARGETS["figure5"].frame(Study(runs, "mini", n=64, sweep_methods=("ffgsm", "apart")))
    assert sorted(fig5["eps_train"].unique()) == [4.0, 8.0]
    assert set(fig5["method"]) == {"ffgsm", "apart"}


def test_study_cost_reads_the_runs_and_steps_records(
    study_dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run_costs` and benchmarks/study_cost.py: one row per run with its metrics.csv's minutes,
    every figure's and table's minutes per invocation, and a page with their totals."""
    runs, figures = study_dirs
    bench = import_benchmark(monkeypatch, "study_cost")
    costs = run_costs(find_runs(runs))
    assert sorted(costs["run"]) == sorted(r.name for r in find_runs(runs))
    fgsm = next(r for r in find_runs(runs) if r.config.method_key == "fgsm")
    row = costs.set_index("run").loc[fgsm.name]
    assert row["train_min"] == pytest.approx(fgsm.metrics()["seconds"].sum() / 60)
    assert row["epochs"] == len(fgsm.metrics()) and row["eval_min"] > 0
    steps = bench.step_costs([figures / "timings.csv"])
    assert set(FIGURES) | set(TABLES) <= set(steps["name"]) and "train" not in set(steps["kind"])
    page = tmp_path / "cost.md"
    monkeypatch.setattr(bench, "write_result", lambda name, body: page.write_text(body))
    args = ["--runs", str(runs), "--timings", str(figures / "timings.csv"), "--name", "cost"]
    result = CliRunner().invoke(bench.main, args)
    assert result.exit_code == 0, result.output
    total = costs["train_min"].sum() + costs["eval_min"].sum()
    assert f"**{len(costs)} runs, {total:.1f} run-minutes**" in page.read_text()


def test_identical_runs_compares_last_weights(
    study_dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/identical_runs.py: a run is equal to itself and not to another seed's."""
    runs, _ = study_dirs
    bench = import_benchmark(monkeypatch, "identical_runs")
    page = tmp_path / "same.md"
    monkeypatch.setattr(bench, "write_result", lambda name, body: page.write_text(body))
    fgsm = sorted(str(r.path) for r in find_runs(runs) if r.config.method_key == "fgsm")
    result = CliRunner().invoke(bench.main, [fgsm[0], fgsm[0], fgsm[1]])
    assert result.exit_code == 0, result.output
    verdicts = [line.split("|")[4].strip() for line in page.read_text().splitlines()[2:]]
    assert verdicts == ["True", "True", "False"]


def test_drawn_figures_have_their_axes(study_dirs: tuple[Path, Path]) -> None:
    runs, _ = study_dirs
    study = Study(runs, "mini", n=64, sweep_methods=("ffgsm", "apart"))
    drawn = TARGETS["figure3"].draw(study)["figure3"]
    a, b = drawn.axes
    assert "strength gap" in a.get_ylabel() and a.get_xlabel() == "epoch"
    assert {t.get_text() for t in a.get_legend().get_texts()} >= {"G_FGSM→PGD-10"}
    # each seed's own curve, thin, in its pair's colour, under the mean of the seeds
    thin = [line for line in a.lines if line.get_alpha() == 0.35]
    means = [line for line in a.lines if line.get_marker() == "o" and len(line.get_xdata())]
    assert len(thin) == 3 * 2 and len(means) == 3  # FGSM, FGSM+, APART × seeds 1, 2
    assert {line.get_color() for line in thin} == {line.get_color() for line in means}
    assert not [line for line in b.lines if line.get_alpha() == 0.35]  # PGD-5: one seed
    fig5 = TARGETS["figure5"].draw(study)["figure5"].axes[0]
    assert fig5.get_xlabel() == "clean test accuracy (%)"
    # every point, one run, carries its 95 % interval over the test images on both axes
    (bars,) = [c for c in fig5.containers if isinstance(c, ErrorbarContainer)]
    assert bars.has_xerr and bars.has_yerr and len(bars.lines[2][0].get_segments()) == 4
    frame = TARGETS["figure5"].frame(study)
    low, acc, high = frame["pgd20_low"], frame["pgd20"], frame["pgd20_high"]
    assert ((low <= acc) & (acc <= high) & (low < high)).all() and (frame["n"] == 64).all()
    fig1a = TARGETS["figure1"].draw(study)["figure1a"]
    assert len(fig1a.axes) == 3 * 4  # the images and the δ of two epochs, 4 images each


def test_writing_a_figure_builds_its_frame_once(
    study_dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`write` draws the panels from the frame it writes as CSV, not from a second build."""
    runs, _ = study_dirs
    study = Study(runs, "mini", n=64, sweep_methods=("ffgsm", "apart"))
    for name in FIGURES:
        figure, built = TARGETS[name], []
        build = type(figure).frame

        def counted(self: object, s: Study, build=build, built=built) -> pd.DataFrame:
            built.append(s)
            return build(self, s)

        monkeypatch.setattr(type(figure), "frame", counted)
        figure.write(study, tmp_path)
        assert built == [study], name


@pytest.mark.parametrize("before", [(), ("figure2",)])
def test_figure3_attacks_only_checkpoints_without_a_pgd20_curve(
    before: tuple[str, ...],
    study_dirs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On runs without an analysis cache, Figure 3 attacks with PGD-10 only the checkpoints
    whose PGD-20 curve is not evaluated first: FGSM's never (Figure 3 needs its curve), APART's
    unless Figure 2 was made before. Each checkpoint is one batch of the 64 images here."""
    runs = shutil.copytree(study_dirs[0], tmp_path / "runs")
    for cache in runs.glob("*/analysis"):
        shutil.rmtree(cache)
    study = Study(runs, "mini", n=64)
    for name in before:
        TARGETS[name].frame(study)
    steps, perturb = [], PGD.perturb

    def counting(self: PGD, *args: torch.Tensor) -> torch.Tensor:
        steps.append(self.steps)
        return perturb(self, *args)

    monkeypatch.setattr(PGD, "perturb", counting)
    TARGETS["figure3"].frame(study)
    attacked = ["fgsm+"] if before else ["fgsm+", "apart"]
    checkpoints = sum(len(study.run(m, s).epochs()) for m in attacked for s in study.seeds_for(m))
    assert steps.count(10) == checkpoints


def test_figures_cost_draws_at_both_commits_from_an_empty_cache(
    data_dir: Path, study_dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/figures_cost.py with HEAD as both commits: each invocation draws from copies of
    the runs without their cache, with the worktree's code; the runs themselves are left as they
    were, and the CSVs agree."""
    runs, _ = study_dirs
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    script = import_benchmark(monkeypatch, "figures_cost")
    written: list[str] = []
    monkeypatch.setattr(script, "write_result", lambda name, body: written.append(body))
    args = study_args(data_dir, runs, tmp_path, "--only", "figure3", "--device", "cpu")
    for flag in ("--out", "--figures-dir"):  # the benchmark's own
        del args[args.index(flag) : args.index(flag) + 2]
    command = ["--runs", str(runs), "--before", "HEAD", "--after", "HEAD",
               "--scratch", str(tmp_path / "scratch"), "--", *args]  # fmt: skip
    result = CliRunner().invoke(script.main, command)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "figure3.csv yes" in written[0]
    for i in range(4):  # before, after, after, before
        assert (tmp_path / "scratch" / f"figures-{i}" / "figure3.csv").is_file()
        assert any((tmp_path / "scratch" / f"runs-{i}").glob("*/analysis"))
        assert not (tmp_path / "scratch" / f"tree-{i}").exists()
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()} == stamps


def test_reproduce_again_redoes_nothing(data_dir: Path, study_dirs: tuple[Path, Path]) -> None:
    runs, figures = study_dirs
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    again = figures.parent / "again"
    result = CliRunner().invoke(main, ["reproduce", *study_args(data_dir, runs, again)])
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no run or cache rewritten
    timings = pd.read_csv(again / "timings.csv")
    trained = timings[timings["kind"] == "train"]
    assert trained["seconds"].max() < 5


def test_figures_command_draws_without_training(
    data_dir: Path, study_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    runs, _ = study_dirs
    args = study_args(data_dir, runs, tmp_path / "f", "--only", "figure4,table6")
    result = CliRunner().invoke(main, ["figures", *args])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "figure4.csv",
        "figure4.pdf",
        "figure4.png",
        "table6.md",
        "table6.tex",
    ]
    missing = CliRunner().invoke(main, ["figures", *study_args(data_dir, tmp_path, tmp_path)])
    assert missing.exit_code == 1 and "missing" in missing.output


def test_seeds_come_from_options_then_the_record_then_the_preset(tmp_path: Path) -> None:
    assert Study(tmp_path, "mini").seeds == (1, 2, 3, 4, 5)
    assert Study(tmp_path, "mini").seeds_for("pgd10") == (1, 2)
    assert Study(tmp_path, "paper-cifar10-prn18").seeds == (0,)
    Study(tmp_path, "mini", seeds=(7, 8), few_seeds=1).record()
    assert Study(tmp_path, "mini").seeds == (7, 8)  # what reproduce trained
    assert Study(tmp_path, "mini").seeds_for("atta10") == (7,)
    assert Study(tmp_path, "mini").from_record == ("seeds", "few_seeds")
    assert Study(tmp_path, "mini", few_seeds=2).from_record == ("seeds",)
    assert Study(tmp_path, "mini", config={"seed": 3}).seeds == (3,)
    assert Study(tmp_path, "mini", config={"seed": 3}).from_record == ("few_seeds",)
    assert Study(tmp_path, "paper-cifar10-prn18").seeds == (0,)  # recorded per preset
    with pytest.raises(ValueError, match="distinct"):
        Study(tmp_path, "mini", seeds=(1, 1))


def test_the_cli_says_which_seeds_it_reads_from_the_record(tmp_path: Path) -> None:
    """A rerun without --seeds/--few-seeds takes study.json's, not the preset's: it says so."""
    args = ["figures", "--preset", "mini", "--out", str(tmp_path), "--only", "figure4"]
    fresh = CliRunner().invoke(main, [*args, "--figures-dir", str(tmp_path / "f")])
    assert "training seeds: 1, 2, 3, 4, 5 (pgd10, pgd5, free8, atta10: 1, 2)\n" in fresh.output
    Study(tmp_path, "mini", seeds=(7, 8), few_seeds=1).record()
    again = CliRunner().invoke(main, [*args, "--figures-dir", str(tmp_path / "f")])
    assert (
        "training seeds: 7, 8 (pgd10, pgd5, free8, atta10: 7) "
        f"(from {tmp_path / 'study.json'}; --seeds and --few-seeds to change)"
    ) in again.output
    told = CliRunner().invoke(main, [*args, "--few-seeds", "2", "--figures-dir", str(tmp_path)])
    assert (
        f"training seeds: 7, 8 (from {tmp_path / 'study.json'}; --seeds to change)" in told.output
    )


def test_wilson_interval() -> None:
    low, high = wilson_interval(0.5, 1000)
    assert (round(low, 4), round(high, 4)) == (0.4691, 0.5309)
    low, high = wilson_interval(0.0, 1000)
    assert low == 0.0
    assert high == pytest.approx(Z95**2 / (1000 + Z95**2))  # the bound's closed form at 0
    with pytest.raises(ValueError, match="at least one image"):
        wilson_interval(0.5, 0)


def test_lasting_collapse_rule() -> None:
    falls = pd.Series([0.1, 0.4, 0.05, 0.3, 0.05, 0.02], index=range(1, 7))
    assert lasting_collapse(falls) == 5  # the last run of epochs below a quarter of the best
    assert lasting_collapse(pd.Series([0.1, 0.4, 0.05, 0.3], index=range(1, 5))) is None
    assert lasting_collapse(pd.Series([0.4, 0.3, 0.35], index=range(1, 4))) is None


def test_collapse_epoch_rule() -> None:
    curve = pd.Series([0.2, 0.3, 0.35, 0.1, 0.0], index=[1, 2, 3, 4, 5])
    assert collapse_epoch(curve) == 4
    assert collapse_epoch(pd.Series([0.2, 0.25, 0.2], index=[1, 2, 3])) is None
    assert json.dumps(collapse_epoch(curve))  # a plain int, writable to JSON


NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "analysis").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_all_against_the_fixture(
    notebook: Path,
    data_dir: Path,
    study_dirs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """'Run all' with the parameter cell pointed at the fixture: no error, the figure saved."""
    import nbformat
    from nbclient import NotebookClient

    runs, _ = study_dirs
    monkeypatch.setenv("ROBDROP_RUNS_DIR", str(runs))
    monkeypatch.setenv("ROBDROP_DATA_DIR", str(data_dir.absolute()))
    monkeypatch.setenv("ROBDROP_N", "64")
    monkeypatch.setenv("ROBDROP_AUTOATTACK", "0")  # as the fixture was made
    monkeypatch.setenv("ROBDROP_FIGURES_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(notebook, as_version=4)
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},
    ).execute()
    written = {p.name for p in tmp_path.iterdir()}
    expected = {
        "figure1_fgsm_perturbations": {"figure1a.png", "figure1b.png"},
        "figure2_training_objective": {"figure2.png"},
        "figure3_strength_gap": {"figure3.png"},
        "figure4_step_sizes": {"figure4.png"},
        "figure5_eps_sweep": {"figure5.png"},
        "tables": {f"table{i}.md" for i in range(2, 7)},
    }[notebook.stem]
    assert expected <= written


def test_later_methods_are_optional_rows_and_sweep_points(tmp_path: Path) -> None:
    plain, later = Study(tmp_path, "mini"), Study(tmp_path, "mini", later_methods=True)

    def methods(study: Study, target: str) -> set[str]:
        return {s.config.method_key for s in TARGETS[target].runs(study)}

    assert {"gradalign", "nfgsm"} <= methods(later, "table2")
    assert not {"gradalign", "nfgsm"} & methods(plain, "table2")
    assert {"gradalign", "nfgsm"} <= methods(later, "figure5")
    assert "gradalign" not in methods(later, "table6")
