"""MLflow tracking: an unreachable server fails at start-up; a failed write later only warns."""

from __future__ import annotations

import logging
import socket

import pytest

from deca_ray.config import ExperimentConfig, TrackingConfig
from deca_ray.errors import RuntimeSetupError
from deca_ray.schedule import Position, StepMetrics
from deca_ray.tracking import Tracker, evaluation_metrics, flatten


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def _metrics(step: int) -> StepMetrics:
    return StepMetrics(Position(0, 0, step, step), clients=[0, 1], client_losses=[1.0, 2.0],
                       bytes_sent=[8, 8], step_time_s=0.1)


def test_unreachable_tracking_server_fails_at_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{_closed_port()}"
    tracker = Tracker(TrackingConfig(tracking_uri=uri, output_dir=tmp_path), tmp_path / "run")
    with pytest.raises(RuntimeSetupError, match="cannot use MLflow tracking store"):
        tracker.start(ExperimentConfig())


def test_failed_metric_write_warns_and_training_goes_on(tmp_path, caplog, monkeypatch):
    tracker = Tracker(TrackingConfig(output_dir=tmp_path), tmp_path / "run", flush_every_steps=1)
    tracker.start(ExperimentConfig())
    from mlflow.tracking import MlflowClient

    def broken(*args, **kwargs):
        raise ConnectionError("store went away")

    monkeypatch.setattr(MlflowClient, "log_batch", broken)
    with caplog.at_level(logging.WARNING, logger="deca_ray.tracking"):
        tracker.log_step(_metrics(0))  # must not raise
    assert "could not log step metrics" in caplog.text and "store went away" in caplog.text
    monkeypatch.undo()
    tracker.end()


def test_step_metrics_are_logged_in_batches_with_per_client_names(tmp_path):
    tracker = Tracker(TrackingConfig(output_dir=tmp_path), tmp_path / "run", flush_every_steps=2)
    tracker.start(ExperimentConfig())
    for step in range(3):
        tracker.log_step(_metrics(step))
    tracker.end()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracker.tracking_uri)
    assert [m.step for m in client.get_metric_history(tracker.run_id, "loss/mean")] == [0, 1, 2]
    assert [m.value for m in client.get_metric_history(tracker.run_id, "client_1/loss")] == [2.0] * 3
    # cumulative bytes per client: 8 bytes a step
    assert [m.value for m in client.get_metric_history(tracker.run_id, "client_0/bytes_sent_total")] == [8, 16, 24]


def test_evaluation_names_say_which_model_and_when():
    assert evaluation_metrics({"avg/accuracy": 0.5}, "before") == {"eval_before/accuracy": 0.5}
    assert evaluation_metrics({"avg/loss": 1.0, "clients_mean/loss": 2.0}, "after") == {
        "eval/loss": 1.0, "eval/clients_mean/loss": 2.0}


def test_flatten_nested_config():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}) == {"a.b": "1", "a.c.d": "x", "e": "[1, 2]"}
