"""Shared bits of the benchmark scripts: where results go and the facts every result carries."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def machine() -> str:
    """One line naming the hardware and software a number was measured on."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"{cpu}, {torch.get_num_threads()} threads"
    )
    return f"{device}; torch {torch.__version__}; Python {platform.python_version()}"


def write_result(name: str, body: str) -> Path:
    """Write docs/results/<name>.md with the command, date and machine above `body`."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(sys.argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"Measured {stamp} on {machine()}.\n\nCommand: `{command}`\n\n{body.rstrip()}\n"
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    return path
