"""Run one experiment end to end: data, clients, evaluation before/after, training, tracking."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from deca_ray.config import ExperimentConfig
from deca_ray.data.types import EncodedExample
from deca_ray.errors import RunInterrupted
from deca_ray.experiment import Inputs, build_clients, client_specs, prepare_inputs
from deca_ray.history import FILE_NAME as HISTORY_FILE
from deca_ray.history import StepHistory
from deca_ray.methods import build_method
from deca_ray.metrics import RayMetrics
from deca_ray.plots import draw_loss_curves, draw_topology
from deca_ray.product.export import save_run_model
from deca_ray.run_plan import SUMMARY_FILE, RunPlan, plan_run
from deca_ray.runtime.driver import Driver
from deca_ray.runtime.group import ClientGroup, LocalClientGroup
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.samples import generate_rows, sample_prompts, table_file
from deca_ray.schedule import StepMetrics, schedule, total_steps
from deca_ray.stopping import stop_signals
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
    """Train with the configured backend; with ``resume_dir``, continue that run from its last checkpoint.

    Nothing is written until every check has passed and the clients are up (and restored, on a
    resume): a run that fails to start leaves no run directory and no MLflow run. SIGINT / SIGTERM
    stop it at the next inner-step boundary with a checkpoint (``RunInterrupted``).
    """
    started = time.perf_counter()
    with stop_signals():
        plan = plan_run(config, resume_dir)  # where the run goes and what it resumes from; writes nothing
        config = plan.config
        tracker = Tracker(config.tracking, plan.run_dir)
        status = "FAILED"
        try:
            inputs = prepare_inputs(config)  # bad data fails here, before anything is written
            with ExitStack() as stack:
                result = _train_and_evaluate(config, inputs, plan, tracker, stack, on_step, on_start)
            result.summary["wall_time_s"] = time.perf_counter() - started
            _finish(result, tracker, plan.run_dir)
            status = "FINISHED"
            return result
        except (KeyboardInterrupt, RunInterrupted) as stop:
            status = "KILLED"  # Ctrl-C, or SIGTERM from `ray job stop` / Kubernetes
            _where_it_stopped(stop, plan)
            raise
        finally:
            tracker.end(status)


def _where_it_stopped(stop: BaseException, plan: RunPlan) -> None:
    """Fill in what a stop's message names: the run directory and the checkpoint a resume continues from."""
    if isinstance(stop, RunInterrupted) and plan.run_dir.is_dir():
        stop.run_dir = str(plan.run_dir)
        latest = plan.checkpointer.latest
        stop.checkpoint = stop.checkpoint or (str(latest.path) if latest is not None else None)


def _train_and_evaluate(
    config: ExperimentConfig, inputs: Inputs, plan: RunPlan, tracker: Tracker, stack: ExitStack,
    on_step: StepCallback | None, on_start: Callable[[int], None] | None,
) -> RunResult:
    run_dir, checkpointer, resumed = plan.run_dir, plan.checkpointer, plan.resume_from
    group, topology = _backend(config, inputs, stack, run_dir.name)
    summary: dict = {"name": config.name, "method": config.algorithm.type, "backend": config.runtime.backend,
                     "num_clients": len(group.client_ids), "fingerprint": config.fingerprint()}
    driver = Driver(
        group, topology, list(schedule(group.num_blocks, config.algorithm, config.seed)), config.runtime,
        checkpointer=checkpointer if config.checkpoint.enabled else None,
        consensus_every_steps=config.tracking.consensus_every_steps,
        run_state=lambda: {"mlflow_run_id": tracker.run_id, "before": summary.get("before", {})},
    )
    if resumed is not None:
        driver.resume(resumed)  # a checkpoint that does not fit these clients fails here, before any write
    plan.open(tracker, inputs.data.partition_report, data=inputs.data)  # the run directory and the MLflow run
    if resumed is not None:
        summary["before"] = resumed.run_state.get("before", {})
        summary["resumed_from"] = str(resumed.path)
    elif config.evaluation.before_training:
        # Every client starts from x0, so x̄ and each client's model are the same model here.
        summary["before"] = _prefixed(group.evaluate_average(inputs.data, config.evaluation), "avg/")
        tracker.log_evaluation(summary["before"], "before", step=0)
        _log_samples(config, inputs, tracker, _samples(config, inputs), {}, "before")  # x0: nothing trained yet
    if resumed is None:
        tracker.log_metrics({"spectral_gap": topology.spectral_gap()}, step=0)
    # Kept exported (a timer re-sets every gauge) until training and evaluation are over.
    ray_metrics = stack.enter_context(RayMetrics(run_dir.name, spectral_gap=topology.spectral_gap))
    ray_metrics.record_run(topology.spectral_gap(), len(group.client_ids))

    steps = StepHistory(run_dir / HISTORY_FILE)

    def record(metrics: StepMetrics) -> None:
        steps.append(metrics.as_dict())  # flushed now: a crash or a stop loses no step
        # A resumed MLflow run has the earlier steps, and a rollback re-runs steps it has: MLflow appends
        # and cannot replace a point, so each step keeps the first value it got (metrics.jsonl the last).
        if metrics.position.global_step > plan.logged_through:
            tracker.log_step(metrics)
            plan.logged_through = metrics.position.global_step
        ray_metrics.record(metrics)
        if on_step is not None:
            on_step(metrics)

    if on_start is not None:
        on_start(total_steps(group.num_blocks, config.algorithm))
    history = driver.run(record)
    summary |= _training_summary(steps.records(), group.client_ids, driver)  # the whole run, resumes included
    summary["topology"] = topology.describe()
    if config.evaluation.after_training:
        summary["after"] = _evaluate_after(group, inputs, config)
        tracker.log_evaluation(summary["after"], "after", step=driver.start_step + len(history))
    samples = _samples(config, inputs) if config.evaluation.after_training else []
    # What differs from x0 only: the layers no block trained are rebuilt from x0, not sent to the driver.
    final_states = list(group.trained_states().values()) if config.tracking.save_model or samples else []
    if samples:
        _log_samples(config, inputs, tracker, samples, build_method(config.algorithm).average(final_states), "after")
    if config.tracking.save_model:
        summary["model_dir"] = _save_model(config, final_states, run_dir, tracker, driver.start_step + len(history))
    return RunResult(run_dir, summary, history, tracker.tracking_uri, tracker.run_id)


def _samples(config: ExperimentConfig, inputs: Inputs) -> list[EncodedExample]:
    return sample_prompts(inputs.data, config.evaluation.sample_generations)


def _log_samples(config: ExperimentConfig, inputs: Inputs, tracker: Tracker, examples: list[EncodedExample],
                 state: dict[str, torch.Tensor], when: str) -> None:
    """Greedy answers of x0 (``before``) or x̄ (``after``) to the fixed held-out prompts, as an MLflow table."""
    if examples:
        tracker.log_table(generate_rows(config, state, inputs.tokenizer, examples, when), table_file(when))


def _save_model(
    config: ExperimentConfig, client_states: list[dict[str, torch.Tensor]], run_dir: Path, tracker: Tracker,
    steps: int,
) -> str | None:
    """The final network-average model as ``<run dir>/model`` (a Hugging Face directory), logged to MLflow."""
    model_dir = save_run_model(config, client_states, run_dir, steps)
    if model_dir is None:
        return None
    tracker.log_model(model_dir)
    return str(model_dir)


def _backend(config: ExperimentConfig, inputs: Inputs, stack: ExitStack, run_name: str):
    """The client group and the topology (service or actor) of the configured backend."""
    service = TopologyService(inputs.topology)
    if config.runtime.backend == "local":
        group: ClientGroup = LocalClientGroup(build_clients(config, inputs))
        return group, service
    from deca_ray.runtime.cluster import connect, disconnect
    from deca_ray.runtime.naming import run_namespace
    from deca_ray.runtime.ray_group import RayClientGroup
    from deca_ray.runtime.remote_topology import RemoteTopology

    stack.callback(disconnect, connect(config.runtime))
    namespace = run_namespace(run_name)  # the run's actors are named there (Ray dashboard)
    topology = RemoteTopology(service, namespace)
    group = RayClientGroup(client_specs(config, inputs), inputs.data.client_shards, config.runtime, namespace)
    stack.callback(group.shutdown)
    return group, topology


def _training_summary(history: list[dict], clients: list[int], driver: Driver) -> dict:
    """Over ``history``: every step's record of the run (``metrics.jsonl``), not only this process's."""
    step_times = sorted(m["step_time_s"] for m in history)
    return {
        "steps": len(history),
        "final_mean_loss": history[-1]["mean_loss"] if history else None,
        "median_step_time_s": step_times[len(step_times) // 2] if history else None,
        "bytes_sent_per_client": {
            client: sum(m["bytes_sent"][m["clients"].index(client)] for m in history if client in m["clients"])
            for client in clients
        },
        "peak_tensor_bytes_per_client": max((max(m["client_tensor_bytes"], default=0.0) for m in history),
                                            default=None),
        "dropped_clients": driver.dropped,
        "restarts": driver.restarts,
        "events": driver.events,
    }


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
    history = StepHistory(run_dir / HISTORY_FILE).records()  # written step by step; the curves span resumes
    result.summary["tracking_uri"] = tracker.tracking_uri
    result.summary["mlflow_run_id"] = tracker.run_id
    artifacts = [run_dir / "config.yaml", run_dir / "partition.json", run_dir / HISTORY_FILE,
                 draw_topology(result.summary["topology"], run_dir / "topology.png"),
                 _write_json(run_dir / SUMMARY_FILE, result.summary)]
    if history:
        artifacts.append(draw_loss_curves(history, run_dir / "loss_curves.png"))
    for path in artifacts:
        tracker.log_artifact(path)


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {prefix + key: value for key, value in metrics.items()}


def _write_json(path: Path, payload: dict) -> Path:
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
