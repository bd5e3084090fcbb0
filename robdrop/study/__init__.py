"""The study layer: the paper's figures and tables, one module each behind a registry
(`registry.TARGETS`), the reproduction's summary and `robdrop reproduce`.

In a notebook: `study = Study(RUNS, "mini")`, then `TARGETS["figure3"].frame(study)` for the
numbers and `TARGETS["figure3"].draw(study)` for the figure."""

from robdrop.study.registry import CORE, TARGETS
from robdrop.study.study import Study

__all__ = ["CORE", "TARGETS", "Study"]
