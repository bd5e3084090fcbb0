"""A figure or table of the paper as one object: the runs it needs in a study, how its tidy
frame is built from their cached evaluations, how it is drawn or written, and which of the
paper's claims it checks. `robdrop.study.registry.TARGETS` lists them; `reproduce`, `figures`,
`--only`, the summary and the notebooks all read that registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from matplotlib.figure import Figure

from robdrop.study.study import RunSpec, Study
from robdrop.study.style import save_figure
from robdrop.study.tables import write_table


class Target:
    """One figure or table. Subclasses set `name` and implement `runs` and `write`."""

    name: ClassVar[str]

    def applies(self, study: Study) -> bool:
        """Whether a reproduction of `study.preset` makes this target."""
        return True

    def runs(self, study: Study) -> list[RunSpec]:
        """The training runs this target is drawn from in `study`."""
        raise NotImplementedError

    def write(self, study: Study, out: Path) -> list[Path]:
        """Draw or write the target under `out`; the files written."""
        raise NotImplementedError

    def claims(self, study: Study) -> list[dict[str, Any]]:
        """The paper's claims this target shows, checked: rows of (claim, measured, holds)."""
        return []


class PaperFigure(Target):
    """A figure: one or more panels drawn from its frame, saved as PNG and PDF, with the frame
    of its plotted numbers (per seed and epoch) as `<name>.csv` beside them. Subclasses
    implement `runs`, `frame` and `panels`; the frame is built once per `write`."""

    def applies(self, study: Study) -> bool:
        return study.draws_figures

    def frame(self, study: Study) -> pd.DataFrame:
        """The numbers the figure plots, one row per point (the cached evaluations)."""
        raise NotImplementedError

    def panels(self, study: Study, frame: pd.DataFrame) -> dict[str, Figure]:
        """The figure's panels by file name, drawn from `frame` (this figure's `frame`)."""
        raise NotImplementedError

    def draw(self, study: Study, frame: pd.DataFrame | None = None) -> dict[str, Figure]:
        """The figure's panels by file name (the call a notebook makes); `frame` when the
        caller already built it, so the cached evaluations are read once."""
        return self.panels(study, self.frame(study) if frame is None else frame)

    def write(self, study: Study, out: Path) -> list[Path]:
        frame = self.frame(study)
        drawn = self.draw(study, frame)
        paths = [path for name, fig in drawn.items() for path in save_figure(fig, out, name)]
        data = out / f"{self.name}.csv"
        frame.to_csv(data, index=False, float_format="%.6g")
        return [*paths, data]


class PaperTable(Target):
    """A table: our rows beside the paper's, written as Markdown and LaTeX."""

    caption: ClassVar[str]
    row_names: ClassVar[dict[str, str] | None] = None  # method -> row label, where not its name

    def frame(self, study: Study) -> pd.DataFrame:
        raise NotImplementedError

    def write(self, study: Study, out: Path) -> list[Path]:
        return write_table(self.frame(study), out, self.name, self.caption, self.row_names)


def holds(flag: bool, held: int | None = None, of: int | None = None) -> str:
    """How a claim's verdict reads in the summary, with the seeds it held in when given."""
    verdict = "yes" if flag else "**no**"
    return verdict if held is None else f"{verdict} ({held}/{of} seeds)"
