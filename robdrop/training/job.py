"""A training run as a cluster job: the run's `robdrop train … --resume` command in a child
process, told apart when it ends: done, stopped by SIGTERM (saved, to be continued) or failed.

Only the standard library is imported here: submitit unpickles this object in every job's
process before the child starts, and torch would add seconds to each job for nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

# what a job returns when SIGTERM stopped its run before the end (saved; --resume continues it)
INTERRUPTED = "interrupted"


class RunJob:
    """One training run as a submitit job: `python -m robdrop train … --resume` in a child
    process. submitit's pre-emption and time-limit signal (USR2 on SLURM) calls `checkpoint`,
    which stops the child with SIGTERM (partial.pt), and the job is requeued to continue."""

    def __init__(self, args: list[str], run_dir: Path, epochs: int, env: dict[str, str]) -> None:
        self.args, self.run_dir, self.epochs, self.env = args, run_dir, epochs, env
        self._child: subprocess.Popen[bytes] | None = None

    def __call__(self) -> str:
        """Train; "done", or INTERRUPTED when SIGTERM stopped the run before its end."""
        env = {**os.environ, **self.env}
        command = [sys.executable, "-m", "robdrop", *self.args]
        self._child = subprocess.Popen(command, env=env, preexec_fn=_ignore_usr2)
        code = self._child.wait()
        epochs = _saved_epochs(self.run_dir)
        if epochs >= self.epochs:
            return "done"
        if code in (0, -signal.SIGTERM):
            return INTERRUPTED
        raise RuntimeError(f"robdrop train exited with status {code} after epoch {epochs}")

    def checkpoint(self) -> Any:
        """Stop the run with SIGTERM (it writes partial.pt) and resubmit the same command."""
        from submitit.helpers import DelayedSubmission

        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)
            self._child.wait()
        return DelayedSubmission(self)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_child": None}


def _saved_epochs(run_dir: Path) -> int:
    """The last epoch saved in `run_dir` (0 when none is)."""
    return max((int(p.stem.split("-")[1]) for p in run_dir.glob("epoch-[0-9]*.pt")), default=0)


def _ignore_usr2() -> None:
    """In the child: SLURM's time-limit signal (USR2) may reach every process of the job, and
    would end the run unsaved; `checkpoint` stops it with SIGTERM instead."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
