"""``python -m benchmarks lab``: every run of a lab preset on every seed, through deca_ray's own clients.

One run = the synthetic task of ``benchmarks.lab.task`` for that seed, ``ClientWorker``s built
from a normal ``ExperimentConfig`` (tiny LLaMA), the in-process reference loop
(``deca_ray.reference.run_reference``) over an Erdős–Rényi graph with Metropolis–Hastings weights
(W = I for methods that do not gossip, one client holding all data for a centralised one, as
``deca_ray.experiment.prepare_inputs`` does), then held-out accuracy / macro-F1 of the network-average
model x̄ and of every client's own model. Runs are independent, so they may go to worker processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.lab.presets import LabPreset, LabRun
from benchmarks.lab.task import PAD, make_task, task_statistics
from benchmarks.results import metadata, write_result
from deca_ray.algorithm.topology import Topology, build_topology, isolated_topology
from deca_ray.client import ClientSpec, ClientWorker
from deca_ray.client.model import shared_base_model
from deca_ray.config import EvaluationConfig, ExperimentConfig, config_from_dict
from deca_ray.data.types import EncodedExample, PreparedData
from deca_ray.methods import build_method
from deca_ray.reference import run_reference

logger = logging.getLogger(__name__)

FINAL_LOSS_STEPS = 5
"""The final training loss is the mean client loss of this many last steps."""
EVAL_BATCH = 128


def run_lab(preset: LabPreset, results_dir: Path, workers: int = 1) -> Path:
    """Every (run, seed) of ``preset``, plus the shared start's scores per seed; returns the result file."""
    started, load_at_start = time.perf_counter(), _load_average()
    jobs = [(preset, run, seed) for seed in preset.seeds for run in preset.runs]
    outcomes = []
    for done, outcome in enumerate(_map(_run_job, jobs, workers), start=1):
        logger.info("lab %d/%d: %s, seed %d: accuracy %.3f (avg model), %.3f (clients); %.1f s", done, len(jobs),
                    outcome["run"], outcome["seed"], outcome["average"]["accuracy"],
                    outcome["clients_mean"]["accuracy"], outcome["train_s"] + outcome["eval_s"])
        outcomes.append(outcome)
    payload = {
        "metadata": metadata(),
        "preset": preset.name,
        "setting": setting(preset),
        "runs": [_describe(preset, run) for run in preset.runs],
        "before": {str(seed): evaluate_start(preset, seed) for seed in preset.seeds},
        "task_statistics": {str(seed): task_statistics(preset.shape, seed) for seed in preset.seeds},
        "results": outcomes,
        "workers": workers,
        "wall_time_s": time.perf_counter() - started,
        "load_average_1min": {"start": load_at_start, "end": _load_average()},
    }
    return write_result(payload, results_dir, kind=preset.kind)


def run_one(preset: LabPreset, run: LabRun, seed: int) -> dict[str, Any]:
    """Train ``run`` on seed ``seed``'s task and score x̄ and each client's model on the held-out set."""
    cpu_started = time.process_time()
    data = make_task(preset.shape, seed)
    config = lab_config(preset, run, seed)
    method = build_method(config.algorithm)
    shards = [[example for shard in data.client_shards for example in shard]] if method.centralised \
        else data.client_shards
    clients = build_clients(config, shards, preset.shape.vocab_size)
    topology = lab_topology(preset, run, seed, len(shards), gossips=method.gossips and not method.centralised)
    train_started = time.perf_counter()
    history = run_reference(clients, topology, config.algorithm, seed)
    eval_started = time.perf_counter()
    evaluation = evaluation_config(preset)
    average = evaluate_average(clients, data, evaluation)
    own_evaluation = evaluation.model_copy(update={"max_examples": preset.client_eval_examples})
    own = [client.evaluate(data, own_evaluation) for client in clients]
    finished = time.perf_counter()
    last = history[-FINAL_LOSS_STEPS:]
    return {
        "run": run.name,
        "seed": seed,
        "average": average,
        "clients_mean": {key: float(np.mean([scores[key] for scores in own])) for key in ("accuracy", "macro_f1")},
        "clients_accuracy": [scores["accuracy"] for scores in own],
        "final_loss": float(np.mean([step.mean_loss for step in last])),
        "final_consensus_distance": history[-1].consensus_distance,
        "steps_per_client": len(history),
        "train_s": eval_started - train_started,
        "eval_s": finished - eval_started,
        "cpu_s": time.process_time() - cpu_started,
    }


def evaluate_start(preset: LabPreset, seed: int) -> dict[str, float]:
    """Scores of x0, the model every client of every run starts from on this seed."""
    data = make_task(preset.shape, seed)
    client = build_clients(lab_config(preset, preset.runs[0], seed), data.client_shards[:1], preset.shape.vocab_size)[0]
    return client.evaluate(data, evaluation_config(preset))


def lab_config(preset: LabPreset, run: LabRun, seed: int) -> ExperimentConfig:
    """A normal experiment config: tiny LLaMA, the run's method, the preset's schedule and learning rate."""
    centralised = build_method(_algorithm_config(preset, run, seed)).centralised
    batch_size = preset.batch_size * (preset.shape.num_clients if centralised else 1)
    return config_from_dict({
        "name": "lab",
        "seed": seed,
        "num_clients": 1 if centralised else preset.shape.num_clients,
        "model": {"name": "tiny-llama", "tiny": preset.model},
        "data": {"batch_size": batch_size},
        "algorithm": _algorithm(preset, run),
        "runtime": {"backend": "local", "frozen_prefix": "off"},
        "checkpoint": {"enabled": False},
    })


def lab_topology(preset: LabPreset, run: LabRun, seed: int, num_clients: int, gossips: bool) -> Topology:
    """The seed's Erdős–Rényi graph with Metropolis–Hastings weights, or W = I."""
    if run.isolated or not gossips:
        return isolated_topology(num_clients)
    return build_topology("erdos_renyi", num_clients, weights="metropolis_hastings",
                          edge_probability=preset.edge_probability, seed=seed)


def build_clients(
    config: ExperimentConfig, shards: Sequence[Sequence[EncodedExample]], vocab_size: int
) -> list[ClientWorker]:
    """One ``ClientWorker`` per shard, sharing the frozen base weights (the runtime's virtual clients)."""
    specs = [ClientSpec.from_config(config, index, pad_token_id=PAD, vocab_size=vocab_size)
             for index in range(len(shards))]
    base = shared_base_model(specs[0])
    return [ClientWorker(spec, shard, shared_base=base) for spec, shard in zip(specs, shards, strict=True)]


def evaluate_average(clients: Sequence[ClientWorker], data: PreparedData, config: EvaluationConfig) -> dict[str, float]:
    """x̄: the method's average of the clients' trained tensors, loaded into the first client for scoring."""
    first = clients[0]
    return first.evaluate(data, config, state=first.method.average([client.trained_state() for client in clients]))


def evaluation_config(preset: LabPreset) -> EvaluationConfig:
    # Every (prompt, label) pair of a batch at once: one chunk, no copied KV caches.
    return EvaluationConfig(batch_size=EVAL_BATCH, max_rows=EVAL_BATCH * (preset.shape.num_classes + 1))


def setting(preset: LabPreset) -> dict[str, Any]:
    """What every run shares, for the result file and the report."""
    return {
        "task": asdict(preset.shape) | {"num_content_tokens": preset.shape.num_content_tokens},
        "model": {"name": "tiny-llama", **preset.model},
        "schedule": {"rounds": preset.rounds, "inner_steps": preset.inner_steps,
                     "layers_per_block": preset.layers_per_block, "num_blocks": preset.model["num_layers"]
                     // preset.layers_per_block, "batch_size": preset.batch_size},
        "topology": {"type": "erdos_renyi", "edge_probability": preset.edge_probability,
                     "weights": "metropolis_hastings"},
        "learning_rates": preset.learning_rates,
        "seeds": list(preset.seeds),
        "client_eval_examples": preset.client_eval_examples,
    }


def _describe(preset: LabPreset, run: LabRun) -> dict[str, Any]:
    return {"name": run.name, "label": run.label, "group": run.group, "family": run.family,
            "lr": preset.learning_rates[run.family], "isolated": run.isolated,
            "algorithm": _algorithm_config(preset, run, preset.seeds[0]).model_dump(mode="json")}


def _algorithm(preset: LabPreset, run: LabRun) -> dict[str, Any]:
    return run.algorithm | {
        "lr": preset.learning_rates[run.family], "rounds": preset.rounds, "inner_steps": preset.inner_steps,
        "blocks": {"layers_per_block": preset.layers_per_block},
    }


def _algorithm_config(preset: LabPreset, run: LabRun, seed: int) -> Any:
    return config_from_dict({"seed": seed, "algorithm": _algorithm(preset, run)}).algorithm


def _run_job(job: tuple[LabPreset, LabRun, int]) -> dict[str, Any]:
    return run_one(*job)


def _map(function: Any, jobs: Iterable[Any], workers: int) -> Iterator[Any]:
    """``map`` in this process (workers = 1) or over spawned worker processes, results in job order."""
    if workers <= 1:
        threads = torch.get_num_threads()
        _one_thread()
        try:
            yield from map(function, jobs)
        finally:
            torch.set_num_threads(threads)
        return
    context = multiprocessing.get_context("spawn")  # forking a process that holds torch threads can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread) as pool:
        yield from pool.map(function, jobs)


def _load_average() -> float | None:
    """The 1-minute load average: how much else ran on the machine while the lab timed itself."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _one_thread() -> None:
    """Tiny tensors: one torch thread per process (more only adds synchronisation)."""
    torch.set_num_threads(1)
