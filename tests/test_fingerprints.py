"""Behaviour is held: the tiny study's fingerprints (weights of every method after two epochs,
method state, metrics, analysis frames, Table 6) equal those in tests/fingerprints.json, bit for
bit. They are computed in a child process in the portable mode of tests/fingerprints.py, which
gives the same bits on any x86-64 CPU."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from . import fingerprints


def test_every_method_has_a_recorded_fingerprint() -> None:
    stored = fingerprints.load()
    assert {f"train/{m}" for m in fingerprints.METHODS} <= set(stored)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="recorded on x86-64")
def test_behaviour_matches_the_recorded_fingerprints(data_dir: Path, tmp_path: Path) -> None:
    stored = fingerprints.load()
    measured = fingerprints.in_portable_mode(data_dir, tmp_path)
    assert set(measured) == set(stored)
    changed = [
        f"{name}: {field}"
        for name, want in stored.items()
        for field, value in want.items()
        if measured[name][field] != value
    ]
    assert not changed, f"behaviour changed: {', '.join(changed)}"
