"""benchmarks/faithful_search.py's pre-registered rules on hand-made screen tables: the cheapest
passing candidate is chosen, and when none passes, round 2's fallback keeps the one closest to
passing (most seeds with C1, then the highest best / PGD-10); round 4 chooses only within its
ceiling of estimated study minutes. No training."""

from __future__ import annotations

from types import ModuleType

import pandas as pd
import pytest

from .conftest import import_benchmark


@pytest.fixture
def script(monkeypatch) -> ModuleType:
    """The script, imported as a module."""
    return import_benchmark(monkeypatch, "faithful_search")


def screen(rows: list[tuple[str, bool | None, float, float]]) -> pd.DataFrame:
    """A screen table of (candidate, C1, best / PGD-10, collapse / E), two seeds each."""
    return pd.DataFrame(
        [
            {
                "candidate": name,
                "seed": 101 + i % 2,
                "C1": c1,
                "best / PGD-10": ratio,
                "collapse / E": fraction,
                "s/epoch": 10.0,
            }
            for i, (name, c1, ratio, fraction) in enumerate(rows)
        ]
    )


def test_the_cheapest_passing_candidate_is_chosen(script) -> None:
    nan = float("nan")
    table = screen(
        [
            *[("T1", True, 0.8, 0.5), ("T1", True, 0.7, 0.6)],  # 20 epochs: cheaper than T2
            *[("T2", True, 0.9, 0.7), ("T2", True, 0.9, 0.7)],
            *[("T3", True, 0.9, 0.7), ("T3", False, 0.9, nan)],
        ]
    )
    chosen, _ = script.choose(table, script.ROUND2)
    assert chosen == "T1"


def test_without_a_passing_candidate_the_closest_counts_c1_seeds_before_the_ratio(script) -> None:
    nan = float("nan")
    table = screen(
        [
            *[("T1", False, 0.9, nan), ("T1", False, 0.95, nan)],
            *[("T2", False, 0.6, nan), ("T2", True, 0.62, 0.87)],
            *[("T3", False, 0.7, nan), ("T3", True, 0.65, 0.9)],
            *[("T4", False, 1.03, nan), ("T4", False, 0.8, nan)],
        ]
    )
    chosen, text = script.choose(table, script.ROUND2)
    assert chosen is None and "no candidate passes" in text
    kept, ranking = script.closest(table, script.ROUND2)
    assert kept == "T3"  # one C1 seed like T2, the higher ratio; T4's ratio counts after seeds
    assert ranking.index("T3") < ranking.index("T2") < ranking.index("T4")


def test_round4_chooses_only_within_s8s_estimated_study_time(script) -> None:
    nan = float("nan")
    ceiling = script.ceiling_minutes()
    assert ceiling == pytest.approx(609.6, abs=0.1)  # S8 at round 1's 31.6 s per epoch
    both = screen([*[("U1", True, 0.7, 0.8)] * 2, *[("U2", True, 0.8, 0.7)] * 2])
    both["s/epoch"] = [40.0, 40.0, 80.0, 80.0]  # 480 and 862 estimated minutes
    assert script.choose(both, script.ROUND4, ceiling)[0] == "U1"
    only_u2 = screen(
        [("U1", True, 0.7, 0.8), ("U1", False, 0.5, nan), *[("U2", True, 0.8, 0.7)] * 2]
    )
    only_u2["s/epoch"] = [40.0, 40.0, 80.0, 80.0]
    chosen, text = script.choose(only_u2, script.ROUND4, ceiling)
    assert chosen is None and "none of them within the ceiling of 610 minutes" in text
    assert script.choose(only_u2, script.ROUND4)[0] == "U2"  # without the ceiling it would pass
    costs = script.cost_text(only_u2, script.ROUND4, ceiling)
    assert "| U1" in costs and "True" in costs and "False" in costs
