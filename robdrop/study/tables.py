"""Tables written as Markdown and LaTeX from their frames (pandas only): readable headers, the
paper's method names, numbers rounded, a dash where a value does not exist."""

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
    "collapse": "collapse (quick check)",
    "sanity": "evaluation sanity",
}


def presentable(frame: pd.DataFrame, row_names: dict[str, str] | None = None) -> pd.DataFrame:
    """Readable columns and method names (`row_names` first: Table 6's ablations), rounded."""
    columns = [c for c in HEADERS if c in frame.columns]
    names = row_names or {}
    methods = frame["method"].map(lambda key: names.get(key) or display_name(key))
    shown = frame[columns].assign(method=methods)
    accuracies = ("clean", "pgd20", "pgd10", "cw20", "autoattack", "gauss")
    shown = shown.round(dict.fromkeys(accuracies, 2))
    shown = shown.round({"seconds": 1, "hours": 2})
    # the paper gives no time or collapse for some rows: a dash, not "nan"
    shown = shown.astype(object).where(shown.notna(), "–")
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
