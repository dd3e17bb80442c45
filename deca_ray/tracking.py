"""MLflow tracking: one run per job, params, batched per-step metrics, evaluation, artifacts.

A store that cannot be reached fails the run at start-up with a clear message; once the
run is going, a failed metrics write only warns (training is worth more than a chart).
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

from deca_ray.config import ExperimentConfig, TrackingConfig
from deca_ray.errors import RuntimeSetupError
from deca_ray.schedule import StepMetrics

logger = logging.getLogger(__name__)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → ``{"algorithm.lr": "5e-05", ...}`` (MLflow params are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def step_metrics(metrics: StepMetrics) -> dict[str, float]:
    """The flat metric dict logged for one inner step."""
    losses = metrics.client_losses
    values = {
        "loss/mean": metrics.mean_loss,
        "loss/min": min(losses),
        "loss/max": max(losses),
        "bytes_sent/total": float(sum(metrics.bytes_sent)),
        "bytes_sent/per_client_mean": sum(metrics.bytes_sent) / len(metrics.bytes_sent),
        "time/step_s": metrics.step_time_s,
        "time/exchange_s": metrics.exchange_time_s,
        "time/barrier_wait_s": metrics.barrier_wait_s,
        "schedule/round": float(metrics.position.round_index),
        "schedule/block": float(metrics.position.block_index),
    }
    if metrics.consensus_distance is not None:  # exact figure: block boundaries (or every N steps) only
        values["consensus_distance"] = metrics.consensus_distance
    if metrics.local_consensus_distance is not None:
        values["local_consensus_distance"] = metrics.local_consensus_distance
    values["late_clients"] = float(len(metrics.late_clients))
    values.update({f"client_loss/{client}": loss for client, loss in zip(metrics.clients, losses, strict=True)})
    return values


class Tracker:
    """Owns the job's MLflow run. All methods are no-ops when tracking is disabled."""

    def __init__(self, config: TrackingConfig, run_dir: Path, flush_every_steps: int = 10) -> None:
        self.config = config
        self.run_dir = run_dir
        self.flush_every_steps = flush_every_steps
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self._pending: list[Any] = []

    def start(self, experiment: ExperimentConfig, run_id: str | None = None) -> None:
        """Open the job's run (or reopen ``run_id`` when resuming); fail fast if the store is unusable."""
        if not self.config.enabled:
            return
        import mlflow

        self.tracking_uri = self.config.tracking_uri or default_tracking_uri(self.config.output_dir)
        # MLflow retries an unreachable server for minutes by default; fail fast at start-up.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            if run_id is not None:
                run = mlflow.start_run(run_id=run_id)
            else:
                experiment_id = self._experiment_id(mlflow)
                run = mlflow.start_run(experiment_id=experiment_id, run_name=self.config.run_name or self.run_dir.name)
        except Exception as error:  # MLflow raises many types for an unreachable or broken store
            raise RuntimeSetupError(
                f"cannot use MLflow tracking store {self.tracking_uri!r}: {type(error).__name__}: "
                f"{str(error).splitlines()[0][:300]}. Start the server (see README) or set "
                "tracking.tracking_uri, or tracking.enabled=false"
            ) from None
        self.run_id = run.info.run_id
        if run_id is None:
            params = flatten(experiment.model_dump(mode="json"))
            self._safely("log params", lambda: mlflow.log_params(params))

    def log_step(self, metrics: StepMetrics) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        stamp = _now_ms()
        step = metrics.position.global_step
        self._pending.extend(Metric(key, value, stamp, step) for key, value in step_metrics(metrics).items())
        if (step + 1) % self.flush_every_steps == 0:
            self.flush()

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        if self.run_id is None:
            return
        import mlflow

        self._safely("log metrics", lambda: mlflow.log_metrics(values, step=step))

    def log_artifact(self, path: Path) -> None:
        if self.run_id is None:
            return
        import mlflow

        self._safely(f"log artifact {path.name}", lambda: mlflow.log_artifact(str(path)))

    def flush(self) -> None:
        if self.run_id is None or not self._pending:
            return
        from mlflow.tracking import MlflowClient

        batch, self._pending = self._pending, []
        client = MlflowClient(self.tracking_uri)
        # log_batch accepts at most 1000 metrics per call.
        for start in range(0, len(batch), 1000):
            chunk = batch[start : start + 1000]
            self._safely("log step metrics", partial(client.log_batch, self.run_id, metrics=chunk))

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is None:
            return
        import mlflow

        self.flush()
        self._safely("end the run", lambda: mlflow.end_run(status=status))

    def _experiment_id(self, mlflow: Any) -> str:
        existing = mlflow.get_experiment_by_name(self.config.experiment)
        if existing is not None:
            return existing.experiment_id
        artifacts = (self.config.output_dir.resolve() / "mlartifacts").as_uri()
        if not self.tracking_uri.startswith(("sqlite:", "file:")) and not Path(self.tracking_uri).exists():
            artifacts = None  # a remote server decides where artifacts live
        return mlflow.create_experiment(self.config.experiment, artifact_location=artifacts)

    def _safely(self, action: str, call) -> None:
        try:
            call()
        except Exception as error:  # a chart is never worth a crashed run
            logger.warning("MLflow: could not %s (%s); training goes on", action, error)


def default_tracking_uri(output_dir: Path) -> str:
    """A sqlite store shared by all runs under ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(output_dir.resolve() / 'mlflow.db').as_posix()}"


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
