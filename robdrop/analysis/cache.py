"""Analysis results cached as CSV under `<run>/analysis/`, keyed by what produced them.

An entry's file name holds two hashes: one of (function, parameters, robdrop version, cache
format) and one of the size and modification time of every checkpoint the result was computed
from. Rewriting a checkpoint (a resumed or retrained run) changes the second hash, so the entry
is recomputed and the stale file for the same parameters is removed. Delete `<run>/analysis/` to
drop every entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import robdrop
from robdrop.training.runs import Run, atomic_write_text

# Raised whenever the same call would now compute other numbers, so no folder mixes old and new:
# 2: reading a checkpoint no longer draws from the RNG its seeded evaluation uses (50d2b61), so
#    the random starts of every random-start attack changed.
CACHE_FORMAT = 2


def _digest(value: Any) -> str:
    """A short, stable hash of JSON-able values (file names stay readable)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp(path: Path) -> list[Any]:
    """What identifies a checkpoint's content cheaply: its name, size and mtime (ns)."""
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def _entry(run: Run, function: str, params: dict[str, Any], inputs: Sequence[Path]) -> Path:
    """Where the result of `function` with `params` on these checkpoints is kept."""
    key = _digest({"function": function, "params": params, "robdrop": robdrop.__version__,
                   "format": CACHE_FORMAT})  # fmt: skip
    return run.path / "analysis" / function / f"{key}-{_digest([_stamp(p) for p in inputs])}.csv"


def lookup(
    run: Run, function: str, params: dict[str, Any], inputs: Sequence[Path]
) -> pd.DataFrame | None:
    """The cached result, or None where it was not computed for these checkpoints."""
    path = _entry(run, function, params, inputs)
    return pd.read_csv(path) if path.is_file() else None


def store(
    run: Run, function: str, params: dict[str, Any], inputs: Sequence[Path], frame: pd.DataFrame
) -> pd.DataFrame:
    """Keep `frame` as the result, replacing one computed from older checkpoints."""
    path = _entry(run, function, params, inputs)
    key = path.name.split("-")[0]
    for stale in path.parent.glob(f"{key}-*.csv"):
        stale.unlink(missing_ok=True)
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


def cached(
    run: Run,
    function: str,
    params: dict[str, Any],
    inputs: Sequence[Path],
    compute: Callable[[], pd.DataFrame],
) -> pd.DataFrame:
    """`compute()` once per (function, params, input checkpoints); later calls read the CSV."""
    frame = lookup(run, function, params, inputs)
    return store(run, function, params, inputs, compute()) if frame is None else frame
