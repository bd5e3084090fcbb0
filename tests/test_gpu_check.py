"""benchmarks/gpu_check.py, the paper-scale path's check, passes on a CPU with --tiny."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from click.testing import CliRunner

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def gpu_check() -> ModuleType:
    """The script, imported as a module."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_passes_tiny_on_cpu_for_every_method(data_dir: Path) -> None:
    check = gpu_check()
    args = ["--device", "cpu", "--tiny", "--data-dir", str(data_dir)]
    result = CliRunner().invoke(check.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output
    table = result.output.split("minibatches per method", 1)[1]
    for method in check.paper_methods():
        for preset in ("paper-cifar10-prn18", "paper-cifar10-wrn34"):
            assert f"{preset} {method}: ok" in table
    for column in ("s/step", "× FGSM", "max |δ|/bound"):
        assert column in table


def test_gpu_check_fails_when_the_trainer_leaves_the_recipe(data_dir: Path, monkeypatch) -> None:
    """A trainer whose momentum does not cycle (FGSM's recipe cycles it) exits 1, saying why."""
    check = gpu_check()
    monkeypatch.setattr("robdrop.training.trainer.cyclic_momentum", lambda lr, top, m, peak: m)
    args = ["--device", "cpu", "--tiny", "--data-dir", str(data_dir), "--methods", "fgsm",
            "--presets", "paper-cifar10-prn18"]  # fmt: skip
    result = CliRunner().invoke(check.main, args, catch_exceptions=False)
    assert result.exit_code == 1
    assert (
        "FAIL: optimizer at progress 0.5" in result.output
        and "1 of 1 checks failed" in result.output
    )
