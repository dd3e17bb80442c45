"""Domain errors whose messages say what the user should change."""

from __future__ import annotations

import shlex
import signal


class DecaError(Exception):
    """Base class of every error deca_ray raises on purpose (CLI exits non-zero with its text)."""


class ConfigError(DecaError):
    """A configuration value is invalid, unknown or inconsistent with another one."""


class TopologyError(DecaError):
    """A communication graph or mixing matrix cannot be used (disconnected, not stochastic...)."""


class DataError(DecaError):
    """A data source is missing, unreadable or lacks the fields the config names."""


class ModelError(DecaError):
    """A model cannot be found or loaded."""


class RuntimeSetupError(DecaError):
    """The Ray cluster or the tracking store cannot be set up as configured."""


class ExportError(DecaError):
    """A run or model directory cannot be exported, evaluated or generated from as asked."""


class RunInterrupted(DecaError):
    """SIGINT or SIGTERM stopped the run: at a safe point (between inner steps), or at once on a repeat.

    The CLI prints it with the checkpoint and the exact resume command and exits ``128 + signal``
    (130 for Ctrl-C, 143 for SIGTERM); MLflow records the run as KILLED.
    """

    def __init__(self, signal_number: int, global_step: int | None = None, checkpoint: str | None = None,
                 run_dir: str | None = None) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number
        self.global_step = global_step
        """The last inner step completed (None: stopped before training began)."""
        self.checkpoint = checkpoint
        """The checkpoint a resume continues from (None: none was written)."""
        self.run_dir = run_dir
        """The run directory, once one exists."""

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number

    def __str__(self) -> str:
        name = signal.Signals(self.signal_number).name
        where = "before training began" if self.global_step is None else f"after inner step {self.global_step + 1}"
        if self.run_dir is None:
            return f"stopped by {name} {where}; no run directory was created, nothing to resume"
        if self.checkpoint is None:
            return f"stopped by {name} {where}; no checkpoint was written, so {self.run_dir} cannot be resumed"
        return (f"stopped by {name} {where}; checkpoint: {self.checkpoint}\n"
                f"resume with: deca-ray run --resume {shlex.quote(self.run_dir)}")
