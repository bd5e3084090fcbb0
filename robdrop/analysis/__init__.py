"""The paper's analyses over per-epoch checkpoints: pure functions from runs to tidy DataFrames,
cached as CSV next to each run (see docs/analysis.md)."""

from robdrop.analysis.common import fixed_test_subset, resolve_run
from robdrop.analysis.crossacc import cross_accuracy, parse_model_spec
from robdrop.analysis.evaluate import evaluate_run, resolve_epochs, val_best_epoch
from robdrop.analysis.export import export_run
from robdrop.analysis.foreign import ForeignModel, build_foreign, parse_foreign
from robdrop.analysis.gap import strength_gap
from robdrop.analysis.textplot import text_plot
from robdrop.analysis.trajectories import perturbation_images, step_size_trajectories

__all__ = [
    "ForeignModel",
    "build_foreign",
    "cross_accuracy",
    "evaluate_run",
    "export_run",
    "fixed_test_subset",
    "parse_foreign",
    "parse_model_spec",
    "perturbation_images",
    "resolve_epochs",
    "resolve_run",
    "step_size_trajectories",
    "strength_gap",
    "text_plot",
    "val_best_epoch",
]
