"""Sections a and b: Ray runtime vs the in-process reference loop, and exchange vs its in-memory floor.

Both run the same config on the same machine, interleaved block activation by block
activation (reference, then Ray, then reference ...) so drift on a shared machine hits
both alike. The reference clients run one after another with all of this process's torch
threads; the Ray actors run concurrently with ``runtime.torch_threads`` each. Both
settings go into the result.
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from benchmarks.driving import drive, stop_topology
from benchmarks.system.counting import CountingGroup, CountingTopology, PointProbe
from benchmarks.system.presets import SystemPreset
from benchmarks.system.timing import median, median_time_s, ratio_entry, steady_steps
from deca_ray.algorithm.mixing import mix
from deca_ray.client import ClientWorker
from deca_ray.config import ExperimentConfig, config_from_dict
from deca_ray.experiment import Inputs, build_clients, client_specs, prepare_inputs
from deca_ray.reference import run_reference
from deca_ray.runtime.ray_group import RayClientGroup
from deca_ray.runtime.remote_topology import RemoteTopology
from deca_ray.runtime.topology_service import MixPlan, TopologyService
from deca_ray.schedule import StepMetrics

logger = logging.getLogger(__name__)

RUNTIME_TARGET = 1.2
EXCHANGE_TARGET = 3.0


def overhead_config(preset: SystemPreset) -> ExperimentConfig:
    """One round training one block; the benchmark repeats the round itself."""
    return config_from_dict({
        "name": f"bench-system-{preset.name}",
        "num_clients": preset.overhead_clients,
        "model": preset.overhead_model,
        "data": {"source": "bbc_news", "max_tokens": preset.max_tokens, "batch_size": preset.batch_size,
                 "body_words": 40, "test_size": 20, "max_train_examples": preset.max_train_examples},
        "topology": {"type": "ring"},
        "algorithm": {"rounds": 1, "inner_steps": preset.inner_steps, "lr": 1e-4,
                      "blocks": {"layers_per_block": 2, "order": "fixed", "fixed_order": [preset.fixed_block]}},
        # threads set explicitly (the runtime's own default rule) so the result records what ran
        "runtime": {"cpus_per_client": preset.cpus_per_client, "include_dashboard": False,
                    "torch_threads": max(1, math.ceil(preset.cpus_per_client))},
    })


@dataclass
class OverheadResult:
    """Sections a and b, the inputs they used, and the driver's traffic with these (large) blocks."""

    runtime: dict
    exchange: dict
    inputs: Inputs
    driver_traffic: dict


def measure_overhead(preset: SystemPreset) -> OverheadResult:
    config = overhead_config(preset)
    inputs = prepare_inputs(config)
    clients = build_clients(config, inputs)
    block_numel = clients[0].partition.blocks[preset.fixed_block].numel
    plans = TopologyService(inputs.topology).plans(0)
    floors = mixing_floors_s(block_numel, plans, preset.floor_repeats)  # before any actor competes for CPUs
    reference_runs, ray_runs, probe = _interleaved_runs(config, inputs, clients, preset)
    return OverheadResult(
        runtime=runtime_section(reference_runs, steady_steps(ray_runs), _settings(config, preset, block_numel)),
        exchange=exchange_section(reference_runs, steady_steps(ray_runs), floors, plans, block_numel),
        inputs=inputs,
        driver_traffic=_driver_traffic(ray_runs, probe, config, block_numel),
    )


def _interleaved_runs(
    config: ExperimentConfig, inputs: Inputs, clients: list[ClientWorker], preset: SystemPreset
) -> tuple[list[StepMetrics], list[StepMetrics], PointProbe]:
    """Measured steps of both backends (warm-up rounds left out) and the driver's byte counts.

    The Ray group is wrapped in the counting group so this run also serves section e; counting
    costs one pickle of a few small dicts per step (microseconds, against steps of tenths of seconds).
    """
    group = CountingGroup(RayClientGroup(client_specs(config, inputs), inputs.data.client_shards, config.runtime))
    remote_topology = RemoteTopology(TopologyService(inputs.topology))
    topology = CountingTopology(remote_topology)
    probe = PointProbe(group, topology)
    reference_runs: list[StepMetrics] = []
    ray_runs: list[StepMetrics] = []
    try:
        for repeat in range(preset.warmup_rounds + preset.repeats):
            with _torch_threads(preset.reference_torch_threads):
                reference = run_reference(clients, inputs.topology, config.algorithm, config.seed)
            probe.start()
            remote = drive(group, topology, config, probe if repeat >= preset.warmup_rounds else None)
            logger.info("overhead round %d: reference %.3f s/step, ray %.3f s/step", repeat,
                        _median_step(reference), _median_step(remote))
            if repeat >= preset.warmup_rounds:
                reference_runs += steady_steps(reference)
                ray_runs += remote
    finally:
        group.shutdown()
        stop_topology(remote_topology)
        clients.clear()
        gc.collect()  # the in-process replicas (GBs for SmolLM2) before the next section
    return reference_runs, ray_runs, probe


def _driver_traffic(ray_runs: list[StepMetrics], probe: PointProbe, config: ExperimentConfig, block_numel: int) -> dict:
    """The driver's bytes per steady step of this run (probe samples line up with ``ray_runs``)."""
    steady = [i for i, metrics in enumerate(ray_runs) if metrics.position.inner_step > 0]
    return {
        "source": "runtime_overhead Ray run", "model": config.model.name, "num_clients": config.num_clients,
        "block_bytes": [block_numel * 4],
        "driver_received_bytes_per_step": median([probe.received[i] for i in steady]),
        "driver_sent_bytes_per_step": median([probe.sent[i] for i in steady]),
        "driver_cpu_s_per_step": median([probe.cpu_s[i] for i in steady]),
    }


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run the reference loop with ``threads`` torch threads (None: leave this process's setting)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mixing_floors_s(block_numel: int, plans: Sequence[MixPlan], repeats: int) -> dict[str, float]:
    """Median time of every client's Eq. 7 (own·w + Σ neighbour·w) in this process, same sizes and degrees.

    Measured with this process's torch threads and with one thread: on a busy shared machine
    multi-threaded kernels stall behind a descheduled thread (measured on a loaded 2-core
    machine: a median 31 ms for two clients' 0.3 MB mixes, where four clients' took 0.09 ms
    in a quieter run), so the floor is the faster of the two.
    """
    blocks = {plan.client: torch.randn(block_numel) for plan in plans}  # (block_numel,) per client

    def mix_everyone() -> None:
        for plan in plans:
            mix(blocks[plan.client], plan.self_weight, [(blocks[j], w) for j, w in plan.neighbours])

    threads = torch.get_num_threads()
    floors = {f"{threads}_threads": median_time_s(mix_everyone, repeats)}
    torch.set_num_threads(1)
    try:
        floors["1_thread"] = median_time_s(mix_everyone, repeats)
    finally:
        torch.set_num_threads(threads)
    return floors


def runtime_section(reference: Sequence[StepMetrics], remote: Sequence[StepMetrics], settings: dict) -> dict:
    reference_s = median([m.step_time_s for m in reference])
    ray_s = median([m.step_time_s for m in remote])
    return ratio_entry(
        "Ray runtime ÷ reference loop, time per inner step", ray_s / reference_s, RUNTIME_TARGET, "<=",
        ray_step_s=ray_s, reference_step_s=reference_s,
        ray_max_client_compute_s=median([max(m.client_compute_s) for m in remote]),
        reference_sum_client_compute_s=median([sum(m.client_compute_s) for m in reference]),
        samples=len(remote), settings=settings,
    )


def exchange_section(
    reference: Sequence[StepMetrics], remote: Sequence[StepMetrics], floors_s: dict[str, float],
    plans: Sequence[MixPlan], block_numel: int,
) -> dict:
    ray_s = median([m.exchange_time_s for m in remote])
    floor_s = min(floors_s.values())
    arithmetic_s = median([max(m.client_mix_compute_s) for m in remote])
    return ratio_entry(
        "exchange + mixing ÷ in-memory floor, per inner step", ray_s / floor_s, EXCHANGE_TARGET, "<=",
        ray_exchange_s=ray_s, floor_s=floor_s, floor_by_threads_s=floors_s,
        reference_exchange_s=median([m.exchange_time_s for m in reference]),
        floor_definition="every client's own·w + Σ neighbour·w on fp32 blocks of the same size, one process",
        block_numel=block_numel, block_bytes=block_numel * 4,
        degrees=[len(plan.neighbours) for plan in plans], samples=len(remote),
        profile={
            "slowest_client_arithmetic_s": arithmetic_s,
            "ray_transport_and_scheduling_s": ray_s - arithmetic_s,
            "arithmetic_share": arithmetic_s / ray_s,
            "definition": "per step: the slowest client's own combine + h + BMA + write-back time inside mix(); "
                          "the rest of the driver-observed phase is Ray (argument fetch, scheduling, replies)",
        },
    )


def _settings(config: ExperimentConfig, preset: SystemPreset, block_numel: int) -> dict:
    runtime = config.runtime
    return {
        "model": config.model.name, "num_clients": config.num_clients, "topology": config.topology.type,
        "max_tokens": config.data.max_tokens, "batch_size": config.data.batch_size,
        "block": preset.fixed_block, "block_numel": block_numel, "inner_steps": preset.inner_steps,
        "warmup_rounds": preset.warmup_rounds, "repeats": preset.repeats,
        "reference_torch_threads": preset.reference_torch_threads or torch.get_num_threads(),
        "ray_cpus_per_client": runtime.cpus_per_client,
        "ray_torch_threads_per_actor": runtime.torch_threads,
        "consensus_every_step": True,
        "first_step_of_each_activation": "excluded (it includes block activation)",
    }


def _median_step(history: Sequence[StepMetrics]) -> float:
    return median([m.step_time_s for m in steady_steps(history)])
