"""Tables 2–6 written as Markdown and LaTeX from the frames of `Study.table` (pandas only)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robdrop.analysis.paper_values import display_name

CAPTIONS = {
    "table2": "Table 2: PreAct ResNet-18 on CIFAR-10",
    "table3": "Table 3: WideResNet-34-10 on CIFAR-10",
    "table4": "Table 4: PreAct ResNet-18 on CIFAR-100",
    "table5": "Table 5: ResNet-50 on ImageNet (total training time)",
    "table6": "Table 6: ablation of APART on CIFAR-10",
}
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
}
# Table 6 names its rows by what each ablation removes
ABLATION_NAMES = {
    "apart": "APART",
    "fgsm+": "APART w/o layer-wise perturbation (= FGSM+)",
    "apart-noinit": "APART w/o perturbation initialisation",
}


def presentable(frame: pd.DataFrame, name: str = "") -> pd.DataFrame:
    """Readable columns and method names (Table 6: the ablations), numbers rounded."""
    columns = [c for c in HEADERS if c in frame.columns]
    names = ABLATION_NAMES if name == "table6" else {}
    methods = frame["method"].map(lambda key: names.get(key) or display_name(key))
    shown = frame[columns].assign(method=methods)
    accuracies = ("clean", "pgd20", "pgd10", "cw20", "autoattack", "gauss")
    shown = shown.round(dict.fromkeys(accuracies, 2))
    shown = shown.round({"seconds": 1, "hours": 2})
    # the paper gives no time or collapse for some rows: a dash, not "nan"
    shown = shown.astype(object).where(shown.notna(), "–")
    return shown.rename(columns=HEADERS)


def write_table(frame: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """`name`.md (with the caption as a heading) and `name`.tex under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    shown = presentable(frame, name)
    caption = CAPTIONS.get(name, name)
    md, tex = out / f"{name}.md", out / f"{name}.tex"
    md.write_text(f"### {caption}\n\n{shown.to_markdown(index=False)}\n")
    tex.write_text(
        shown.to_latex(
            index=False, caption=caption, label=f"tab:{name}", na_rep="–", float_format="%.2f"
        )
    )
    return [md, tex]
