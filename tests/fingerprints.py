"""Behaviour fingerprints: what a tiny study trains and measures, reduced to hashes and numbers.

Everything goes through the command line (`robdrop train`, `eval`, `gap`, `crossacc`, `figures`),
so the fingerprints do not depend on where the code lives: a refactoring that moves files must
reproduce them bit for bit. Float reductions differ between CPUs (vector width, threads), so
fingerprints are computed in a portable mode (`PORTABLE_ENV`): one thread, ATen's unvectorised
kernels, oneDNN off (convolutions through MKL) and MKL's conditional numerical reproducibility,
which give the same bits on any x86-64 CPU with this torch. `python -m tests.fingerprints
--record` stores them in tests/fingerprints.json; `tests/test_fingerprints.py` compares.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from click.testing import CliRunner

from robdrop.cli import main

FILE = Path(__file__).with_name("fingerprints.json")
REPO = Path(__file__).resolve().parents[1]
# every registered method, with a small number where the name takes one
METHODS = (
    "fgsm",
    "ffgsm",
    "pgd2",
    "free2",
    "atta2",
    "apart",
    "fgsm+",
    "apart-noinit",
    "gradalign",
    "nfgsm",
)
# seconds-long runs on real images; the mini preset's seed (1) and names
SETTINGS = {
    "train_size": 256,
    "val_size": 32,
    "width": 4,
    "epochs": 2,
    "eval_size": 64,
    "eval_attack": "pgd2",
    "batch_size": 64,
}
TRAIN = [
    *(a for k, v in SETTINGS.items() for a in (f"--{k.replace('_', '-')}", str(v))),
    *("--preset", "mini", "--seed", "1", "--save-every-epoch", "--quiet"),
]
N = ("--n", "32", "--preset", "mini")


# set before torch starts: the same float operations in the same order on every x86-64 CPU
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"}


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _hash_tensors(tree: Any) -> str:
    """sha256 over every tensor of a nested dict/list (names and bytes), in sorted order."""
    h = hashlib.sha256()

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key in sorted(value, key=str):
                visit(f"{prefix}/{key}", value[key])
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                visit(f"{prefix}/{i}", item)
        elif isinstance(value, torch.Tensor):
            h.update(prefix.encode())
            buffer = io.BytesIO()
            buffer.write(value.detach().cpu().contiguous().numpy().tobytes())
            h.update(buffer.getvalue())
        else:
            h.update(f"{prefix}={value!r}".encode())

    visit("", tree)
    return h.hexdigest()


def _magnitude(state: dict[str, torch.Tensor]) -> float:
    """Σ|w| over floating weights: a number that moves a little, not all at once, across CPUs."""
    return float(sum(v.double().abs().sum() for v in state.values() if v.is_floating_point()))


def _frame(path: Path, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in frame.columns if any(d in c for d in drop)])


def _digest_frame(frame: pd.DataFrame) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def _numbers(frame: pd.DataFrame) -> list[float]:
    return [float(v) for v in frame.select_dtypes("number").to_numpy().ravel()]


def compute(data_dir: Path, out: Path) -> dict[str, dict[str, Any]]:
    """Train every method two tiny epochs and run the analyses over them: {name: fingerprint}."""
    runs, tables = out / "runs", out / "tables"
    common = ("--data-dir", str(data_dir), "--out", str(runs))
    prints: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        _cli("train", "--method", method, *TRAIN, *common)
        folder = runs / f"mini-{method}-eps8-seed1"
        state = torch.load(folder / "epoch-002.pt", weights_only=True)
        examples = folder / "examples-002.pt"
        method_state = dict(state["method"])
        if examples.exists():
            method_state.update(torch.load(examples, weights_only=True))
        metrics = _frame(folder / "metrics.csv", drop=("seconds",))
        prints[f"train/{method}"] = {
            "model": _hash_tensors(state["model"]),
            "method": _hash_tensors(method_state),
            "metrics": _digest_frame(metrics),
            "magnitude": _magnitude(state["model"]),
            "numbers": _numbers(metrics),
        }
    analyses = {
        "eval": ("eval", "fgsm", "-a", "pgd20", "-a", "clean", "-a", "cw20", "-a", "gauss"),
        "gap-fgsm": ("gap", "--from", "fgsm", "--to", "pgd10"),
        "gap-apart": ("gap", "--from", "apart", "--to", "pgd10"),
        "gap-pgd2": ("gap", "--from", "pgd2", "--to", "pgd20"),
        "crossacc-own": ("crossacc", "--model", "pgd2@2", "--perturb", "own", "--source", "fgsm"),
        "crossacc-fgsm": ("crossacc", "--model", "apart@last", "--source", "fgsm+"),
    }
    for name, args in analyses.items():
        path = out / f"{name}.csv"
        _cli(*args, *N, "--out", str(runs), "--device", "cpu", "--out-csv", str(path))
        frame = _frame(path, drop=("seconds",))
        prints[f"analysis/{name}"] = {"frame": _digest_frame(frame), "numbers": _numbers(frame)}
    sets = [a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}")]
    _cli(
        "figures", "--preset", "mini", "--only", "table6", "--figures-dir", str(tables),
        "--n", "32", "--no-autoattack", "--device", "cpu", "--seeds", "1", *common, *sets,
    )  # fmt: skip
    table = pd.read_csv(tables / "table6.md", sep="|", skiprows=2, skipinitialspace=True)
    table = table.drop(columns=[c for c in table.columns if "time" in c or "Unnamed" in c])
    prints["study/table6"] = {
        "frame": _digest_frame(table),
        "numbers": _numbers(table.apply(pd.to_numeric, errors="coerce")),
    }
    return prints


def load() -> dict[str, dict[str, Any]]:
    """The recorded fingerprints ({} before any were recorded)."""
    return json.loads(FILE.read_text()) if FILE.is_file() else {}


def in_portable_mode(data_dir: Path, out: Path) -> dict[str, dict[str, Any]]:
    """`compute` in a fresh process set up by PORTABLE_ENV."""
    command = [sys.executable, "-m", "tests.fingerprints", "--data-dir", str(data_dir)]
    command += ["--out", str(out), "--print"]
    env = {**os.environ, **PORTABLE_ENV}
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=os.environ.get("ROBDROP_DATA_DIR", "../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/robdrop-fingerprints"))
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--record", action="store_true", help="write tests/fingerprints.json")
    what.add_argument("--print", action="store_true", help="print the fingerprints as JSON")
    args = parser.parse_args()
    if args.record:  # in a child process with the portable settings
        prints = in_portable_mode(Path(args.data_dir), args.out)
        FILE.write_text(json.dumps(prints, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(prints)} fingerprints in {FILE}")
    else:
        if os.environ.get("ATEN_CPU_CAPABILITY") != "default":
            sys.exit("--print runs in portable mode only (see PORTABLE_ENV)")
        torch.set_num_threads(1)
        torch.backends.mkldnn.enabled = False
        print(json.dumps(compute(Path(args.data_dir), args.out)))
