"""Where a run goes and what it resumes from, decided before anything is written; then opening it.

``plan_run`` is the start-up validation of a run's places: the locations it writes (``preflight``),
and on ``--resume`` the run directory and its newest checkpoint (manifest types, fingerprint). A
complete run is refused unless the resume raises ``algorithm.rounds`` (an extension). Nothing
is written until ``RunPlan.open`` (what data preparation adds to the dataset cache is taken back
if the run never gets there), which the runner calls once the data are prepared and the
clients are up and restored: only then does the run directory appear and the MLflow run start
(or reopen), so a rejected run leaves no directory, no MLflow run and no changed status.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from deca_ray.checkpoint import CheckpointError, Manifest
from deca_ray.config import ExperimentConfig, TrackingConfig, dump_config, load_config
from deca_ray.errors import ConfigError
from deca_ray.preflight import preflight
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.tracking import Tracker

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
STEP_METRIC = "loss/mean"
"""A metric every inner step logs: its MLflow history says which steps the run already has."""


@dataclass
class RunPlan:
    """A checked run: its config (resumes: as recorded), directory, checkpointer and resume point."""

    config: ExperimentConfig
    run_dir: Path
    """Not yet created for a new run."""
    checkpointer: Checkpointer
    resume_from: Manifest | None = None
    extends: bool = False
    """A complete run resumed with more ``algorithm.rounds``."""
    logged_through: int = -1
    """The last inner step the MLflow run already holds (set by ``open``): later steps only are logged."""
    def open(self, tracker: Tracker, partition_report: dict, **start_options: Any) -> None:
        """Start (or reopen) the MLflow run, then create the run directory (new runs: config, partition)."""
        run_state = self.resume_from.run_state if self.resume_from is not None else {}
        with _store_lock(self.config.tracking):  # two runs creating one sqlite store at once race
            tracker.start(self.config, run_id=run_state.get("mlflow_run_id"), **start_options)
        if self.resume_from is None:
            self.run_dir.mkdir(parents=True, exist_ok=False)
            (self.run_dir / "config.yaml").write_text(dump_config(self.config))
            (self.run_dir / "partition.json").write_text(json.dumps(partition_report, indent=2, default=str))
            return
        if self.extends:  # the longer run's summary replaces the shorter one's when it ends
            (self.run_dir / "config.yaml").write_text(dump_config(self.config))
            (self.run_dir / SUMMARY_FILE).unlink(missing_ok=True)
        self.logged_through = last_logged_step(tracker)


def plan_run(config: ExperimentConfig, resume_dir: Path | None = None) -> RunPlan:
    """Check everything about the run's places that is knowable now; write nothing."""
    if resume_dir is None:
        preflight(config)
        run_dir = config.tracking.output_dir / f"{config.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S-%f}"
        return RunPlan(config, run_dir, _checkpointer(config, run_dir))
    # The run directory lies in its output directory by construction: its MLflow store is there too,
    # wherever the resume is started from.
    tracking = config.tracking.model_copy(update={"output_dir": resume_dir.parent})
    config = config.model_copy(update={"tracking": tracking})
    preflight(config, resume_dir)
    extends = _check_resumable(config, resume_dir)
    checkpointer = _checkpointer(config, resume_dir)
    manifest = checkpointer.load_latest()
    if manifest is None:
        raise CheckpointError(f"{resume_dir} holds no checkpoint to resume from ({checkpointer.directory} has none); "
                              f"start it again: deca-ray run {resume_dir / 'config.yaml'}")
    return RunPlan(config, resume_dir, checkpointer, manifest, extends)


def _check_resumable(config: ExperimentConfig, run_dir: Path) -> bool:
    """Refuse a complete run unless ``algorithm.rounds`` grows; returns whether this is such an extension."""
    recorded = load_config(run_dir / "config.yaml").algorithm.rounds
    rounds = config.algorithm.rounds
    if rounds < recorded:
        raise ConfigError(f"--resume {run_dir}: algorithm.rounds={rounds} is below the run's {recorded}; a resumed "
                          "run keeps its rounds or raises them")
    if not (run_dir / SUMMARY_FILE).is_file():
        return False
    if rounds == recorded:
        raise ConfigError(
            f"--resume {run_dir}: the run is complete (its {SUMMARY_FILE} is written), so there is nothing to resume "
            f"and its results stay as they are. To train it further, raise algorithm.rounds (e.g. --set "
            f"algorithm.rounds={recorded + 1}); to train again, start a new run: deca-ray run {run_dir / 'config.yaml'}"
        )
    logger.info("extending complete run %s from %d to %d rounds", run_dir, recorded, rounds)
    return True


def _checkpointer(config: ExperimentConfig, run_dir: Path) -> Checkpointer:
    return Checkpointer(config.checkpoint, config.checkpoint.directory or run_dir / "checkpoints",
                        config.fingerprint(), config.algorithm.inner_steps)


def _store_lock(tracking: TrackingConfig) -> AbstractContextManager[object]:
    """A file lock beside a local sqlite store (the default one included) while a run opens it."""
    if not tracking.enabled:
        return nullcontext()
    uri = tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:
        database = tracking.output_dir / "mlflow.db"
    elif uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
    else:
        return nullcontext()
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(database.with_name(f".{database.name}.lock")), timeout=120)


def last_logged_step(tracker: Tracker) -> int:
    """The last inner step the tracker's MLflow run holds (-1: none, or tracking off or unreadable)."""
    if tracker.run_id is None:
        return -1
    try:
        from mlflow.tracking import MlflowClient

        history = MlflowClient(tracker.tracking_uri).get_metric_history(tracker.run_id, STEP_METRIC)
    except Exception as error:  # reading back is a nicety: at worst a step is logged twice
        logger.warning("MLflow: could not read which steps run %s holds (%s)", tracker.run_id, error)
        return -1
    return max((metric.step for metric in history), default=-1)
