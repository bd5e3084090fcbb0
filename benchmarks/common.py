"""Shared bits of the benchmark scripts: where results go and the facts every result carries."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from robdrop.study.report import hardware

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def write_result(name: str, body: str) -> Path:
    """Write docs/results/<name>.md with the command, date and machine above `body`."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(sys.argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"Measured {stamp} on {hardware()}.\n\nCommand: `{command}`\n\n{body.rstrip()}\n"
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    return path
