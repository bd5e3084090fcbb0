"""Evaluation sanity checks, in the spirit of AutoAttack's flags: for one evaluated model, the
signs that its robustness numbers cannot be taken at face value.

- PGD-20 and AutoAttack disagree by more than 5 points (PGD-20 above: gradient masking; below:
  an AutoAttack that did not run as it should);
- accuracy under random noise in the ε-ball is below accuracy under PGD-20: the attack is broken
  (a worst case must not be weaker than chance);
- clean accuracy judged in train mode (BatchNorm on batch statistics) and in eval mode differ by
  more than 10 points: the running statistics do not describe the model;
- AutoAttack's own checks raised a flag (a randomised or dynamic defence, zero gradients, …).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

# what the checks need evaluated beside clean, PGD-20 and AutoAttack: two forward passes
SANITY_ATTACKS = ("random", "clean@train")
# every check but AutoAttack's (`robdrop eval --sanity` adds these to the attacks asked for)
CHECKED = ("clean", "pgd20", *SANITY_ATTACKS)
# the AutoAttack specs whose accuracy stands for "autoattack", the first found
AUTOATTACKS = ("autoattack", "autoattack-apgd", "autoattack-ta")
AA_DISAGREEMENT = 5.0  # points
MODE_DIFFERENCE = 10.0  # points
OK = "ok"


def sanity_flags(acc: Mapping[str, float], aa_flags: str | None = None) -> list[str]:
    """The checks that fail for accuracies in % by spec (clean, pgd20, autoattack, random,
    clean@train; a missing one skips its check) and AutoAttack's own flags."""
    flags = []
    pgd, aa = acc.get("pgd20"), acc.get("autoattack")
    if pgd is not None and aa is not None and abs(pgd - aa) > AA_DISAGREEMENT:
        flags.append(f"PGD-20 {pgd:.1f} % vs AutoAttack {aa:.1f} %: > {AA_DISAGREEMENT:g} points")
    noise = acc.get("random")
    if pgd is not None and noise is not None and noise < pgd:
        flags.append(f"random noise {noise:.1f} % < PGD-20 {pgd:.1f} %: broken attack")
    clean, train = acc.get("clean"), acc.get("clean@train")
    if clean is not None and train is not None and abs(clean - train) > MODE_DIFFERENCE:
        flags.append(f"clean {clean:.1f} % in eval mode vs {train:.1f} % in train mode")
    if aa_flags and aa_flags != "none":
        flags.append(f"AutoAttack: {aa_flags}")
    return flags


def sanity(acc: Mapping[str, float], aa_flags: str | None = None) -> str:
    """The failed checks in one cell, or 'ok'."""
    return "; ".join(sanity_flags(acc, aa_flags)) or OK


def sanity_table(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict per (run, epoch) of an `evaluate_run` table (accuracies as fractions)."""
    rows = []
    for (run, epoch), group in table.groupby(["run", "epoch"], sort=False):
        by_attack = group.set_index("attack")
        acc = (100 * by_attack["accuracy"]).to_dict()
        aa = next((spec for spec in AUTOATTACKS if spec in acc), None)
        flags = None
        if aa is not None:
            acc["autoattack"] = acc[aa]
            found = by_attack["flags"].get(aa) if "flags" in by_attack else None
            flags = found if isinstance(found, str) else None
        rows.append({"run": run, "epoch": epoch, "sanity": sanity(acc, flags)})
    return pd.DataFrame(rows, columns=["run", "epoch", "sanity"])
