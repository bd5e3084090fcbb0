"""Checkpoints others can load: a run's weights as a plain state_dict (`torch.load(...,
weights_only=True)`, no run machinery) and a JSON card saying what the model is, how to build it,
what it was trained on and how accurate it was measured to be (`robdrop export`).

The card is also a foreign-model spec (`analysis/foreign.py`): `robdrop eval CARD.json` loads the
export back through the same path as any model robdrop did not train.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import robdrop
from robdrop.analysis.evaluate import evaluate_run, resolve_epochs
from robdrop.analysis.foreign import CARD_FORMAT
from robdrop.training.runs import Run, atomic_write, atomic_write_text

FACTORY = "robdrop.models:build_model"  # imports torch only, never robdrop's training code


def git_commit() -> dict[str, Any]:
    """The commit robdrop's source is at, and whether tracked files differ from it."""
    root = Path(robdrop.__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _weights_of(run: Run, epoch: int | str) -> tuple[int, dict[str, torch.Tensor], str]:
    """The chosen epoch, its model weights and where they came from.

    'best' (= 'val-best') is the epoch with the highest validation PGD-20 accuracy, as in every
    analysis; 'probe-best' is the monitor's best.pt (`robdrop.training.best`).
    """
    if epoch == "probe-best":
        state = run.load_best()
        return int(state["epoch"]), state["model"], "best.pt (probe-best: the monitor's choice)"
    (chosen,) = resolve_epochs(run, epoch if isinstance(epoch, int) else str(epoch))
    best = epoch in ("best", "val-best")
    origin = "best by validation PGD-20" if best else run.checkpoint_path(chosen).name
    return chosen, run.load_checkpoint(chosen)["model"], origin


def quick_check(run: Run, epoch: int) -> dict[str, Any]:
    """The trainer's per-epoch accuracies for `epoch` from metrics.csv (fractions), if any."""
    metrics = run.metrics()
    if metrics.empty or epoch not in set(metrics["epoch"]):
        return {}
    row = metrics.set_index("epoch").loc[epoch]
    found = {
        col.removeprefix("test_").removesuffix("_acc"): float(row[col])
        for col in metrics.columns
        if col.startswith("test_") and col.endswith("_acc") and not math.isnan(row[col])
    }
    if not found:
        return {}
    images = min(run.config.eval_size, run.data.get("num_test", run.config.eval_size))
    return {
        **found,
        "images": images,
        "source": f"metrics.csv: the trainer's check on the first {images} test images",
    }


def card(run: Run, epoch: int, weights_file: str, sha256: str, origin: str) -> dict[str, Any]:
    """What an export is: architecture, how to build it, data, ε, method, accuracy, commit."""
    cfg, facts = run.config, run.data
    kwargs = {
        "arch": cfg.model,
        "num_classes": facts["num_classes"],
        "mean": list(facts["mean"]),
        "std": list(facts["std"]),
        "width": cfg.width,
    }
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return {
        "format": CARD_FORMAT,
        "weights": weights_file,
        "sha256": sha256,
        "architecture": cfg.model,
        "width": cfg.width,
        "input": "float NCHW in [0, 1], normalised inside the model (the first module)",
        "image_shape": facts["image_shape"],
        "factory": FACTORY,
        "factory_kwargs": kwargs,
        "build": [
            "import torch",
            "from robdrop.models import build_model  # torch only, no training code",
            f"model = build_model({args})",
            f"model.load_state_dict(torch.load({weights_file!r}, weights_only=True))",
            "model.eval()",
        ],
        "dataset": cfg.dataset,
        "num_classes": facts["num_classes"],
        "train_size": facts["num_train"],
        "eps255": cfg.eps255,
        "method": cfg.method_key,
        "method_options": dict(cfg.options),
        "preset": cfg.preset,
        "seed": cfg.seed,
        "epoch": epoch,
        "epochs": cfg.epochs,
        "taken_from": origin,
        "run": run.name,
        "accuracy": {"quick_check": quick_check(run, epoch)},
        "robdrop": {"version": robdrop.__version__, **git_commit()},
        "trained_with": run.info.get("versions", {}),
    }


def export_run(
    run: Run,
    epoch: int | str = "last",
    out_dir: str | Path = "exports",
    *,
    measure: Sequence[str] = (),
    n: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write `<run>-epochNNN.pt` (the model's state_dict) and `.json` (its card) to `out_dir`.

    `measure` names attacks (e.g. pgd20, autoattack) evaluated now on `n` test images drawn with
    `seed` (cached as in `robdrop eval`) and recorded in the card beside the quick check.
    """
    chosen, weights, origin = _weights_of(run, epoch)
    out_dir = Path(out_dir)
    stem = f"{run.name}-epoch{chosen:03d}"
    weights_path, card_path = out_dir / f"{stem}.pt", out_dir / f"{stem}.json"
    plain = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    atomic_write(weights_path, lambda f: torch.save(plain, f))
    sha256 = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    info = card(run, chosen, weights_path.name, sha256, origin)
    if measure:
        table = evaluate_run(
            run, measure, [chosen], n=n, seed=seed, device=device, data_dir=data_dir
        )
        info["accuracy"]["measured"] = {
            **{row.attack: row.accuracy for row in table.itertuples()},
            "images": int(table["n"].iloc[0]),
            "seed": seed,
            "attacks": {row.attack: row.description for row in table.itertuples()},
        }
    atomic_write_text(card_path, json.dumps(info, indent=2) + "\n")
    return weights_path, card_path
