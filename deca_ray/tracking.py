"""MLflow tracking: one run per job, params, tags, dataset inputs, batched per-step metrics, evaluation, artifacts.

Where the run goes is ``deca_ray.tracking_store``'s decision; tags and datasets are
``deca_ray.tracking_context``'s. A store that cannot be reached fails the run at start-up with a clear message; once the
run is going, a failed metrics write only warns (training is worth more than a chart).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from deca_ray.config import ExperimentConfig, TrackingConfig
from deca_ray.data.types import PreparedData
from deca_ray.errors import RuntimeSetupError
from deca_ray.run_watchdog import RunWatchdog
from deca_ray.schedule import StepMetrics
from deca_ray.tracking_context import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, client_datasets, run_tags
from deca_ray.tracking_store import (
    check_store_outlives_job,
    default_tracking_uri,  # noqa: F401  (re-exported: deca_ray.tracking.default_tracking_uri)
    experiment_name,
    local_store_path,
    ray_job_id,
    tracking_uri,
    where_to_look,
)

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


def step_metrics(metrics: StepMetrics, cumulative_bytes: Mapping[int, float] | None = None) -> dict[str, float]:
    """The flat metric dict logged for one inner step (``cumulative_bytes``: bytes each client sent so far)."""
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
        "schedule/round": float(metrics.position.round_number),  # 1-based, as the CLI and Grafana
        "schedule/block": float(metrics.position.block_index),
    }
    if metrics.consensus_distance is not None:  # exact figure: block boundaries (or every N steps) only
        values["consensus_distance"] = metrics.consensus_distance
    if metrics.local_consensus_distance is not None:
        values["local_consensus_distance"] = metrics.local_consensus_distance
    values["late_clients"] = float(len(metrics.late_clients))
    if metrics.client_tokens:
        values["throughput/tokens_per_s"] = sum(metrics.client_tokens) / max(metrics.step_time_s, 1e-9)
    if metrics.client_tensor_bytes:
        values["tensor_memory/peak_bytes"] = max(metrics.client_tensor_bytes)
    values.update(client_metrics(metrics, cumulative_bytes))
    return values


def client_metrics(metrics: StepMetrics, cumulative_bytes: Mapping[int, float] | None = None) -> dict[str, float]:
    """Per-client series, named so a chart says which client: ``client_3/loss``, ``client_3/bytes_sent_total``
    (cumulative over the run), ``client_3/tokens_per_s``, ``client_3/peak_tensor_bytes``."""
    values: dict[str, float] = {}
    optional = {"tokens_per_s": metrics.tokens_per_s, "peak_tensor_bytes": metrics.client_tensor_bytes}
    for index, client in enumerate(metrics.clients):
        prefix = f"client_{client}/"
        values[prefix + "loss"] = metrics.client_losses[index]
        values[prefix + "bytes_sent"] = float(metrics.bytes_sent[index])
        if cumulative_bytes is not None and client in cumulative_bytes:
            values[prefix + "bytes_sent_total"] = float(cumulative_bytes[client])
        for name, series in optional.items():
            if len(series) == len(metrics.clients):  # reported for every client this step
                values[prefix + name] = float(series[index])
    return values


def evaluation_metrics(results: Mapping[str, float], when: str) -> dict[str, float]:
    """Held-out metrics under names that say which model and when: ``eval_before/accuracy`` (x0, step 0),
    ``eval/accuracy`` (x̄ after training), ``eval/clients_mean/accuracy`` (the clients' own models)."""
    prefix = {"before": "eval_before/", "after": "eval/"}[when]
    return {prefix + key.removeprefix("avg/"): value for key, value in results.items()}


class Tracker:
    """Owns the job's MLflow run. All methods are no-ops when tracking is disabled."""

    def __init__(self, config: TrackingConfig, run_dir: Path, flush_every_steps: int = 10) -> None:
        self.config = config
        self.run_dir = run_dir
        self.flush_every_steps = flush_every_steps
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.tracking_uri: str | None = None
        self._pending: list[Any] = []
        self._bytes_total: dict[int, float] = {}
        self._watchdog: RunWatchdog | None = None
        self._uri_before: str | None = None

    def start(self, experiment: ExperimentConfig, run_id: str | None = None, data: PreparedData | None = None) -> None:
        """Open the job's run (or reopen ``run_id`` when resuming); fail fast if the store is unusable.

        A new run gets the config as params, tags (code version, method, versions, Ray job, clients,
        topology) and, with ``data``, every client's shard as a dataset input.
        """
        if not self.config.enabled:
            return
        import mlflow

        self.tracking_uri = tracking_uri(self.config)
        check_store_outlives_job(self.tracking_uri)
        # MLflow retries an unreachable server for minutes by default; fail fast at start-up.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
        # set_tracking_uri also exports MLFLOW_TRACKING_URI; end() restores the caller's value, so a
        # later run in this process (a benchmark suite) does not take this run's store for the user's.
        self._uri_before = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            if run_id is not None:
                run = mlflow.start_run(run_id=run_id, log_system_metrics=self.config.system_metrics)
            else:
                run = mlflow.start_run(
                    experiment_id=self._experiment_id(mlflow), run_name=self.config.run_name or self.run_dir.name,
                    tags=run_tags(experiment, ray_job_id()), log_system_metrics=self.config.system_metrics,
                )
        except Exception as error:  # MLflow raises many types for an unreachable or broken store
            self._restore_tracking_uri(mlflow)
            raise RuntimeSetupError(
                f"cannot use MLflow tracking store {self.tracking_uri!r}: {type(error).__name__}: "
                f"{str(error).splitlines()[0][:300]}. Start the server (see README), set MLFLOW_TRACKING_URI or "
                "tracking.tracking_uri, or tracking.enabled=false"
            ) from None
        self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
        self._watchdog = RunWatchdog(self.tracking_uri, self.run_id)  # KILLED, should this process be killed
        if run_id is None:
            params = flatten(experiment.model_dump(mode="json"))
            self._safely("log params", lambda: mlflow.log_params(params))
            if data is not None:
                self._safely("log dataset inputs", lambda: self._log_datasets(mlflow, data, experiment.data.source))
        else:
            self._bytes_total = _cumulative_bytes(run.data.metrics)  # the series continue where they stopped
        logger.info("MLflow run %s%s: %s", self.run_id, " (resumed)" if run_id else "",
                    where_to_look(self.tracking_uri, self.experiment_id, self.run_id))

    def log_step(self, metrics: StepMetrics) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        for client, sent in zip(metrics.clients, metrics.bytes_sent, strict=True):
            self._bytes_total[client] = self._bytes_total.get(client, 0.0) + sent
        stamp = _now_ms()
        step = metrics.position.global_step
        values = step_metrics(metrics, self._bytes_total)
        self._pending.extend(Metric(key, value, stamp, step) for key, value in values.items())
        if (step + 1) % self.flush_every_steps == 0:
            self.flush()

    def log_evaluation(self, results: Mapping[str, float], when: str, step: int) -> None:
        """Held-out metrics ``before`` training (``eval_before/...``) or ``after`` it (``eval/...``)."""
        self.log_metrics(evaluation_metrics(results, when), step=step)

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

    def log_model(self, directory: Path) -> None:
        """The exported Hugging Face directory as the run's ``model/`` artifacts (``tracking.log_model``)."""
        if self.run_id is None or not self.config.log_model:
            return
        import mlflow

        self._safely("log the model directory", lambda: mlflow.log_artifacts(str(directory), artifact_path="model"))

    def log_table(self, rows: dict[str, list], artifact_file: str) -> None:
        """Rows as an MLflow table artifact (the UI's table view); log each file once (see ``samples.table_file``)."""
        if self.run_id is None:
            return
        import mlflow

        self._safely(f"log the table {artifact_file}", lambda: mlflow.log_table(rows, artifact_file=artifact_file))

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
        """Close the run as FINISHED, FAILED (an error) or KILLED (Ctrl-C, SIGTERM)."""
        if self.run_id is None:
            return
        import mlflow

        self.flush()
        self._safely("end the run", lambda: mlflow.end_run(status=status))
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        logger.info("MLflow run %s ended %s", self.run_id, status)
        self._restore_tracking_uri(mlflow)

    def _restore_tracking_uri(self, mlflow: Any) -> None:
        mlflow.set_tracking_uri(self._uri_before)
        if self._uri_before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)

    def _experiment_id(self, mlflow: Any) -> str:
        """The experiment's id, created if needed, tagged so MLflow 3's UI opens it in model-training mode."""
        name = experiment_name(self.config)
        existing = mlflow.get_experiment_by_name(name)
        if existing is not None:
            if EXPERIMENT_KIND_TAG not in existing.tags:
                self._safely("tag the experiment kind", lambda: mlflow.MlflowClient().set_experiment_tag(
                    existing.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND))
            return existing.experiment_id
        artifacts: str | None = (self.config.output_dir.resolve() / "mlartifacts").as_uri()
        if local_store_path(self.tracking_uri or "") is None:
            artifacts = None  # a server decides where artifacts live
        return mlflow.create_experiment(name, artifact_location=artifacts,
                                        tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})

    def _log_datasets(self, mlflow: Any, data: PreparedData, source: str) -> None:
        entries = client_datasets(data, source)
        with warnings.catch_warnings():  # MLflow hints that integer count columns cannot hold missing values
            warnings.simplefilter("ignore", UserWarning)
            mlflow.log_inputs(datasets=[dataset for dataset, _, _ in entries],
                              contexts=[context for _, context, _ in entries],
                              tags_list=[tags for _, _, tags in entries])

    def _safely(self, action: str, call) -> None:
        try:
            call()
        except Exception as error:  # a chart is never worth a crashed run
            logger.warning("MLflow: could not %s (%s); training goes on", action, error)


def _cumulative_bytes(latest: Mapping[str, float]) -> dict[int, float]:
    """``client_i/bytes_sent_total`` values of a run being resumed, by client."""
    totals = {}
    for key, value in latest.items():
        client, _, name = key.partition("/")
        if name == "bytes_sent_total" and client.startswith("client_") and client[7:].isdigit():
            totals[int(client[7:])] = value
    return totals


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
