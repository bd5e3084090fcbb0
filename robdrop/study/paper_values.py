"""The paper's published numbers (Tables 2–6), used as reference marks and as labelled fallbacks.

Accuracies are in percent, times in seconds per epoch (Table 5: hours in total), exactly as
printed in Li et al.; the source table is named in each frame's `source` column.
"""

from __future__ import annotations

import pandas as pd

_CIFAR_COLUMNS = ["method", "clean", "pgd20", "cw20", "gauss", "seconds"]

_ROWS = {
    "table2": [
        ("atta10", 82.10, 49.03, 58.30, 73.10, 140),
        ("pgd10", 82.05, 47.43, 56.55, 72.33, 133),
        ("free8", 81.64, 47.37, 56.10, 72.56, 62),
        ("ffgsm", 83.81, 46.06, 55.34, 72.25, 20),
        ("apart", 82.45, 49.30, 58.50, 73.18, 29),
    ],
    "table3": [
        ("atta10", 83.80, 54.33, 59.11, 77.05, 706),
        ("pgd10", 86.43, 47.12, 56.45, 75.70, 680),
        ("free8", 85.54, 47.68, 56.31, 75.98, 252),
        ("ffgsm", 85.10, 46.37, 56.21, 75.10, 122),
        ("apart", 84.75, 51.10, 58.50, 76.50, 162),
    ],
    "table4": [
        ("atta10", 56.20, 25.60, 30.75, 42.10, 140),
        ("pgd10", 55.14, 25.61, 30.65, 42.41, 133),
        ("free8", 55.13, 25.88, 30.55, 42.15, 62),
        ("ffgsm", 57.95, 25.31, 30.06, 42.03, 20),
        ("apart", 57.10, 27.10, 32.36, 43.30, 29),
    ],
}

# Table 5 (ImageNet, ResNet-50, ε = 2/255): PGD-10 accuracy and total hours; the baselines'
# times come from their own papers on other hardware (marked * in the paper).
_TABLE5 = [
    ("atta2", 60.70, 44.57, 97.0),
    ("free4", 64.44, 43.52, 39.0),
    ("ffgsm", 60.90, 43.46, 12.0),
    ("apart", 60.52, 44.30, 15.0),
]

# Table 6 (CIFAR-10): the ablation. The paper calls its network "Pre-ResNet20"; the released code's
# preact20() is PreActResNet(PreActBlock, [2, 2, 2, 2]), i.e. PreAct ResNet-18, and the APART row
# equals Table 2's.
_TABLE6 = [
    ("apart", 82.45, 49.30),
    ("fgsm+", 83.30, 46.35),
    ("apart-noinit", 82.00, 48.40),
]


def paper_table(name: str) -> pd.DataFrame:
    """The paper's table `name` ('table2' … 'table6') as a frame with a `source` column."""
    if name in _ROWS:
        frame = pd.DataFrame(_ROWS[name], columns=_CIFAR_COLUMNS)
    elif name == "table5":
        frame = pd.DataFrame(_TABLE5, columns=["method", "clean", "pgd10", "hours"])
    elif name == "table6":
        frame = pd.DataFrame(_TABLE6, columns=["method", "clean", "pgd20"])
    else:
        raise ValueError(f"the paper has no {name!r}; choose table2 … table6")
    return frame.assign(source=f"paper {name.replace('table', 'Table ')}")


def paper_value(table: str, method: str, column: str) -> float | None:
    """One published number, or None where the paper does not give it."""
    frame = paper_table(table).set_index("method")
    if method not in frame.index or column not in frame.columns:
        return None
    return float(frame.loc[method, column])


_NAMES = {
    "fgsm": "FGSM",
    "ffgsm": "F+FGSM",
    "fgsm+": "FGSM+",
    "apart": "APART",
    "apart-noinit": "APART w/o init",
    "gradalign": "GradAlign",
    "nfgsm": "N-FGSM",
}
_PREFIXES = {"pgd": "PGD", "free": "Free", "atta": "ATTA", "cw": "C&W"}


def display_name(key: str) -> str:
    """A method or attack key as the paper writes it: pgd10 → PGD-10, free8 → Free-8."""
    if key in _NAMES:
        return _NAMES[key]
    head = key.rstrip("0123456789")
    return f"{_PREFIXES.get(head, head)}-{key[len(head) :]}" if head != key else key
