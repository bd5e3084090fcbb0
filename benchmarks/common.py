"""Shared bits of the benchmark scripts: where results go and the facts every result carries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from robdrop.study.report import hardware

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def write_result(name: str, body: str, results: Path = RESULTS) -> Path:
    """Write <results>/<name>.md (default docs/results/) with the command, date and machine
    above `body`."""
    results.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(sys.argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"Measured {stamp} on {hardware()}.\n\nCommand: `{command}`\n\n{body.rstrip()}\n"
    path = results / f"{name}.md"
    path.write_text(text)
    return path


def train_job(out: Path, name: str, args: list[str]) -> Path:
    """One job: `robdrop train … --out OUT --name NAME --resume --quiet` with one thread (two
    such jobs share the 2 cores), logged to OUT/NAME.log; the run folder. Raises when it fails."""
    command = [sys.executable, "-m", "robdrop", "train", *args, "--out", str(out), "--name",
               name, "--resume", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = out / f"{name}.log"
    out.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        done = subprocess.run(command, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed; see {log}")
    return out / name


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link where the file system allows one, else a copy with its times."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def without_cache(source: Path, dest: Path) -> Path:
    """`source` (a run, or a folder of runs) again at `dest`, replacing what was there: files
    linked or copied with their modification times, so cache stamps match; every `analysis/`
    folder left out."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns("analysis"))  # fmt: skip
    return dest
