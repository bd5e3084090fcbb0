"""Tables written as Markdown and LaTeX from their frames (pandas only): readable headers, the
paper's method names, accuracies with their uncertainty, a dash where a value does not exist."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robdrop.study.paper_values import display_name

HEADERS = {
    "method": "method",
    "source": "source",
    "clean": "clean (%)",
    "pgd20": "PGD-20 (%)",
    "pgd10": "PGD-10 (%)",
    "cw20": "C&W-20 (%)",
    "autoattack": "AutoAttack (%)",
    "gauss": "Gaussian (%)",
    "seconds": "time/epoch (s)",
    "hours": "time (h)",
    "seeds": "seeds",
    "collapse": "collapse for good (seeds; quick check)",
    "sanity": "evaluation sanity",
}
ACCURACIES = ("clean", "pgd20", "pgd10", "cw20", "autoattack", "gauss")


def with_uncertainty(frame: pd.DataFrame, column: str) -> pd.Series:
    """An accuracy's cells as "mean ± std [low, high]": the spread over training seeds and the
    95 % interval over test images, where the frame has them (the paper's rows have neither)."""
    std, low, high = (frame.get(f"{column}_{part}") for part in ("std", "low", "high"))

    def cell(i: int) -> object:
        mean = frame[column].iloc[i]
        if pd.isna(mean):
            return mean
        text = f"{mean:.2f}"
        if std is not None and pd.notna(std.iloc[i]):
            text += f" ± {std.iloc[i]:.2f}"
        if low is not None and pd.notna(low.iloc[i]):
            text += f" [{low.iloc[i]:.1f}, {high.iloc[i]:.1f}]"
        return text

    return pd.Series([cell(i) for i in range(len(frame))], index=frame.index, dtype=object)


def presentable(frame: pd.DataFrame, row_names: dict[str, str] | None = None) -> pd.DataFrame:
    """Readable columns and method names (`row_names` first: Table 6's ablations), rounded."""
    columns = [c for c in HEADERS if c in frame.columns]
    names = row_names or {}
    methods = frame["method"].map(lambda key: names.get(key) or display_name(key))
    shown = frame[columns].assign(method=methods).round({"seconds": 1, "hours": 2})
    for column in (c for c in ACCURACIES if c in columns):
        shown[column] = with_uncertainty(frame, column)
    # the paper gives no time or collapse for some rows: a dash, not "nan"
    shown = shown.astype(object).where(shown.notna(), "–")
    if "seeds" in shown:  # a count, not a float
        shown["seeds"] = shown["seeds"].map(lambda v: v if v == "–" else int(v))
    return shown.rename(columns=HEADERS)


def write_table(
    frame: pd.DataFrame,
    out: Path,
    name: str,
    caption: str,
    row_names: dict[str, str] | None = None,
) -> list[Path]:
    """`name`.md (with the caption as a heading) and `name`.tex under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    shown = presentable(frame, row_names)
    md, tex = out / f"{name}.md", out / f"{name}.tex"
    md.write_text(f"### {caption}\n\n{shown.to_markdown(index=False)}\n")
    tex.write_text(
        shown.to_latex(
            index=False, caption=caption, label=f"tab:{name}", na_rep="–", float_format="%.2f"
        )
    )
    return [md, tex]
