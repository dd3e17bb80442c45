"""Run one experiment end to end: data, clients, evaluation before/after, training, tracking."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from deca_ray.config import ExperimentConfig, dump_config
from deca_ray.errors import DecaError
from deca_ray.experiment import Inputs, build_clients, client_specs, prepare_inputs
from deca_ray.metrics import RayMetrics
from deca_ray.plots import draw_loss_curves, draw_topology
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.runtime.driver import Driver
from deca_ray.runtime.group import ClientGroup, LocalClientGroup
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import StepMetrics, schedule, total_steps
from deca_ray.tracking import Tracker

logger = logging.getLogger(__name__)

StepCallback = Callable[[StepMetrics], None]


@dataclass
class RunResult:
    """What a finished run reports (also written as ``summary.json`` in the run directory)."""

    run_dir: Path
    summary: dict
    history: list[StepMetrics]
    tracking_uri: str | None
    run_id: str | None


def run_experiment(
    config: ExperimentConfig,
    on_step: StepCallback | None = None,
    on_start: Callable[[int], None] | None = None,
    resume_dir: Path | None = None,
) -> RunResult:
    """Train with the configured backend; with ``resume_dir``, continue that run from its last checkpoint."""
    started = time.perf_counter()
    inputs = prepare_inputs(config)  # bad data fails here, before anything is written
    if resume_dir is not None:
        run_dir = resume_dir
    else:
        run_dir = _new_run_dir(config)
        (run_dir / "config.yaml").write_text(dump_config(config))
        _write_json(run_dir / "partition.json", inputs.data.partition_report)
    checkpointer = Checkpointer(config.checkpoint, config.checkpoint.directory or run_dir / "checkpoints",
                                config.fingerprint(), config.algorithm.inner_steps)
    if resume_dir is not None and checkpointer.load_latest() is None:
        raise DecaError(f"{run_dir} holds no checkpoint to resume from ({checkpointer.directory} is empty)")
    resumed_state = checkpointer.latest.run_state if checkpointer.latest else {}
    tracker = Tracker(config.tracking, run_dir)
    tracker.start(config, run_id=resumed_state.get("mlflow_run_id"))
    status = "FAILED"
    try:
        with ExitStack() as stack:
            result = _train_and_evaluate(config, inputs, run_dir, tracker, stack, checkpointer, on_step, on_start)
        result.summary["wall_time_s"] = time.perf_counter() - started
        _finish(result, tracker, run_dir)
        status = "FINISHED"
        return result
    finally:
        tracker.end(status)


def _train_and_evaluate(
    config: ExperimentConfig, inputs: Inputs, run_dir: Path, tracker: Tracker, stack: ExitStack,
    checkpointer: Checkpointer, on_step: StepCallback | None, on_start: Callable[[int], None] | None,
) -> RunResult:
    group, topology = _backend(config, inputs, stack)
    resumed = checkpointer.latest
    summary: dict = {"name": config.name, "method": config.algorithm.type, "backend": config.runtime.backend,
                     "num_clients": len(group.client_ids), "fingerprint": config.fingerprint()}
    driver = Driver(
        group, topology, list(schedule(group.num_blocks, config.algorithm, config.seed)), config.runtime,
        checkpointer=checkpointer if config.checkpoint.enabled else None,
        consensus_every_steps=config.tracking.consensus_every_steps,
        run_state=lambda: {"mlflow_run_id": tracker.run_id, "before": summary.get("before", {})},
    )
    if resumed is not None:
        driver.resume(resumed)
        summary["before"] = resumed.run_state.get("before", {})
        summary["resumed_from"] = str(resumed.path)
    elif config.evaluation.before_training:
        # Every client starts from x0, so x̄ and each client's model are the same model here.
        summary["before"] = _prefixed(group.evaluate_average(inputs.data, config.evaluation), "avg/")
        tracker.log_metrics(summary["before"] | {"spectral_gap": topology.spectral_gap()}, step=0)
    ray_metrics = RayMetrics(run_dir.name)
    ray_metrics.record_spectral_gap(topology.spectral_gap())

    def record(metrics: StepMetrics) -> None:
        tracker.log_step(metrics)
        _record_ray_metrics(ray_metrics, metrics)
        if on_step is not None:
            on_step(metrics)

    if on_start is not None:
        on_start(total_steps(group.num_blocks, config.algorithm))
    history = driver.run(record)
    summary |= _training_summary(history, group.client_ids, driver)
    summary["topology"] = topology.describe()
    if config.evaluation.after_training:
        summary["after"] = _evaluate_after(group, inputs, config)
        tracker.log_metrics({f"final/{k}": v for k, v in summary["after"].items()}, step=driver.start_step + len(history))
    return RunResult(run_dir, summary, history, tracker.tracking_uri, tracker.run_id)


def _backend(config: ExperimentConfig, inputs: Inputs, stack: ExitStack):
    """The client group and the topology (service or actor) of the configured backend."""
    service = TopologyService(inputs.topology)
    if config.runtime.backend == "local":
        group: ClientGroup = LocalClientGroup(build_clients(config, inputs))
        return group, service
    from deca_ray.runtime.cluster import connect, disconnect
    from deca_ray.runtime.ray_group import RayClientGroup
    from deca_ray.runtime.remote_topology import RemoteTopology

    stack.callback(disconnect, connect(config.runtime))
    topology = RemoteTopology(service)
    group = RayClientGroup(client_specs(config, inputs), inputs.data.client_shards, config.runtime)
    stack.callback(group.shutdown)
    return group, topology


def _training_summary(history: list[StepMetrics], clients: list[int], driver: Driver) -> dict:
    step_times = sorted(m.step_time_s for m in history)
    return {
        "steps": len(history),
        "final_mean_loss": history[-1].mean_loss if history else None,
        "median_step_time_s": step_times[len(step_times) // 2] if history else None,
        "bytes_sent_per_client": {
            client: sum(m.bytes_sent[m.clients.index(client)] for m in history if client in m.clients)
            for client in clients
        },
        "peak_tensor_bytes_per_client": max((max(m.client_tensor_bytes, default=0.0) for m in history), default=None),
        "dropped_clients": driver.dropped,
        "restarts": driver.restarts,
        "events": driver.events,
    }


def _record_ray_metrics(ray_metrics: RayMetrics, metrics: StepMetrics) -> None:
    position = metrics.position
    ray_metrics.record_step(
        round=position.round_index,
        block=position.block_index,
        inner_step=position.inner_step,
        client_losses=metrics.client_losses,
        consensus_distance=metrics.consensus_distance,
        bytes_sent=metrics.bytes_sent,
        step_s=metrics.step_time_s,
        exchange_s=metrics.exchange_time_s,
        barrier_wait_s=metrics.barrier_wait_s,
        tokens_per_s=metrics.tokens_per_s,
        clients=metrics.clients,
    )


def _evaluate_after(group: ClientGroup, inputs: Inputs, config: ExperimentConfig) -> dict[str, float]:
    results = _prefixed(group.evaluate_average(inputs.data, config.evaluation), "avg/")
    if config.evaluation.per_client:
        per_client = list(group.evaluate_clients(inputs.data, config.evaluation).values())
        for metric in per_client[0]:
            values = [client[metric] for client in per_client]
            mean = sum(values) / len(values)
            results[f"clients_mean/{metric}"] = mean
            results[f"clients_std/{metric}"] = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return results


def _finish(result: RunResult, tracker: Tracker, run_dir: Path) -> None:
    history = [metrics.as_dict() for metrics in result.history]
    with (run_dir / "metrics.jsonl").open("a") as stream:
        for record in history:
            stream.write(json.dumps(record) + "\n")
    result.summary["tracking_uri"] = tracker.tracking_uri
    result.summary["mlflow_run_id"] = tracker.run_id
    artifacts = [run_dir / "config.yaml", run_dir / "partition.json", run_dir / "metrics.jsonl",
                 draw_topology(result.summary["topology"], run_dir / "topology.png"),
                 _write_json(run_dir / "summary.json", result.summary)]
    if history:
        artifacts.append(draw_loss_curves(history, run_dir / "loss_curves.png"))
    for path in artifacts:
        tracker.log_artifact(path)


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {prefix + key: value for key, value in metrics.items()}


def _new_run_dir(config: ExperimentConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    run_dir = config.tracking.output_dir / f"{config.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def _write_json(path: Path, payload: dict) -> Path:
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
