"""A bar chart in text, one line per index value: a figure that fits a terminal or a log."""

from __future__ import annotations

import math

import pandas as pd


def text_plot(series: pd.Series, width: int = 40, fmt: str = "{:.4f}") -> str:
    """Horizontal bars from zero (negative values extend left of it), labelled by the index."""
    values = series.astype(float)
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    scale = width / ((hi - lo) or 1.0)
    zero = round(-lo * scale)
    label_width = max((len(str(i)) for i in values.index), default=0)
    lines = [f"{'':>{label_width}}  {series.name or ''}"]
    for label, v in values.items():
        if math.isfinite(v):
            a, b = sorted((zero, round((v - lo) * scale)))
            bar = " " * a + "█" * (b - a) + " " * (width - b)
        else:
            bar = " " * width
        lines.append(f"{label!s:>{label_width}} |{bar}| {fmt.format(v)}")
    return "\n".join(lines)
