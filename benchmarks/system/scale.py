"""Section e: the scale sweep — driver time and driver bytes per inner step as clients grow.

Tiny LLaMA clients on a ring, one full round each, one thread per actor and fractional CPU
requests so many actors share few cores. Beyond ``sweep_max_actors`` clients, actors host
several virtual clients each (``runtime.clients_per_actor``), sharing the frozen weights: a
Ray worker process costs ~0.5 GB here, so 64 one-client actors would not fit in memory. The
driver's own work per step is its process CPU time between steps (Ray's client threads
included; time blocked waiting is not). Its bytes are what ``benchmarks.system.counting``
counts: the pickled size of everything its calls return (metric dicts, floats, mixing plans)
plus the arguments it sends to ``mix`` (weights and ObjectRef ids): blocks never pass through it,
so the same count is compared with the runtime-overhead section's Ray run at the same number
of clients, whose blocks are far larger (SmolLM2's: ~380×), to show its bytes do not follow.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import psutil

from benchmarks.driving import drive, stop_topology
from benchmarks.system.counting import CountingGroup, CountingTopology, PointProbe
from benchmarks.system.presets import SystemPreset
from benchmarks.system.timing import median, ratio_entry, steady_steps
from deca_ray.algorithm.topology import build_topology
from deca_ray.client import ClientSpec
from deca_ray.config import ExperimentConfig, config_from_dict
from deca_ray.data.types import EncodedExample
from deca_ray.runtime.ray_group import RayClientGroup
from deca_ray.runtime.remote_topology import RemoteTopology
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import StepMetrics

logger = logging.getLogger(__name__)

PAD = 0
MEMORY_HEADROOM = 0.7
"""Use at most this share of free memory for a sweep point's actors (Ray kills workers at 95%)."""


def sweep_config(
    num_clients: int, tiny: dict[str, Any], preset: SystemPreset, cpus_per_client: float
) -> ExperimentConfig:
    return config_from_dict({
        "num_clients": num_clients,
        "model": {"name": "tiny-llama", "tiny": tiny},
        "topology": {"type": "ring"},
        "algorithm": {"rounds": 1, "inner_steps": preset.sweep_inner_steps, "lr": 1e-3,
                      "blocks": {"layers_per_block": 2, "order": "ascending"}},
        "runtime": {"cpus_per_client": cpus_per_client, "torch_threads": 1, "include_dashboard": False,
                    "clients_per_actor": clients_per_actor(num_clients, preset)},
    })


def clients_per_actor(num_clients: int, preset: SystemPreset) -> int:
    return math.ceil(num_clients / preset.sweep_max_actors)


def measure_point(num_clients: int, tiny: dict[str, Any], preset: SystemPreset, cpus_per_client: float) -> dict:
    """Start ``num_clients`` actors, train one round, return timings, bytes and the history."""
    config = sweep_config(num_clients, tiny, preset, cpus_per_client)
    specs = [ClientSpec.from_config(config, i, PAD, preset.sweep_vocab) for i in range(num_clients)]
    shards = [_synthetic_shard(preset.sweep_vocab, i) for i in range(num_clients)]
    started = time.perf_counter()
    ray_group = RayClientGroup(specs, shards, config.runtime)
    startup_s = time.perf_counter() - started
    group = CountingGroup(ray_group)
    remote_topology = RemoteTopology(TopologyService(build_topology("ring", num_clients)))
    topology = CountingTopology(remote_topology)
    probe = PointProbe(group, topology)
    try:
        block_bytes = [ray_group.block_bytes(k) for k in range(ray_group.num_blocks)]
        probe.start()
        history = drive(group, topology, config, probe)
        actor_rss = _actor_rss_bytes(ray_group)
    finally:
        ray_group.shutdown()
        stop_topology(remote_topology)
    return _summarise_point(num_clients, tiny, startup_s, history, probe, block_bytes, actor_rss)


def _summarise_point(num_clients: int, tiny: dict[str, Any], startup_s: float, history: list[StepMetrics],
                     probe: PointProbe, block_bytes: list[int], actor_rss: list[int]) -> dict:
    steady = [i for i, m in enumerate(history) if m.position.inner_step > 0]
    steps = steady_steps(history)
    return {
        "num_clients": num_clients,
        "actors": len(actor_rss),
        "hidden_size": tiny["hidden_size"],
        "block_bytes": block_bytes,
        "actor_startup_s": startup_s,
        "steps": len(history),
        "step_time_s": median([m.step_time_s for m in steps]),
        "driver_cpu_s_per_step": median([probe.cpu_s[i] for i in steady]),
        "step_minus_slowest_compute_s": median([m.step_time_s - max(m.client_compute_s) for m in steps]),
        "driver_received_bytes_per_step": median([probe.received[i] for i in steady]),
        "driver_sent_bytes_per_step": median([probe.sent[i] for i in steady]),
        "actor_rss_bytes_median": int(median(actor_rss)),
        "history": history,
    }


def run_scale_sweep(preset: SystemPreset, cluster_cpus: float) -> dict:
    """Points of the sweep (as many as fit time and memory) and why it stopped, if it did.

    The points other sections read (the first two, for a growth exponent, and the traffic and
    overhead points) are measured even past the time budget: a slow machine gets a longer
    sweep rather than no result. Memory still stops it (Ray would kill workers).
    """
    cpus_per_client = _cpus_per_client(cluster_cpus, max(preset.sweep_clients))
    required = {*preset.sweep_clients[:2], preset.overhead_clients, preset.traffic_clients}
    started = time.perf_counter()
    points: list[dict] = []
    stopped = None
    for num_clients in preset.sweep_clients:
        budget_left = math.inf if num_clients in required else preset.sweep_budget_s - (time.perf_counter() - started)
        reason = _cannot_fit(num_clients, points, preset, budget_left)
        if reason:
            stopped = {"at_clients": num_clients, "reason": reason}
            logger.warning("scale sweep stops before %d clients: %s", num_clients, reason)
            break
        points.append(measure_point(num_clients, preset.sweep_model, preset, cpus_per_client))
        logger.info("scale: %d clients, driver %.4f s CPU/step, step %.3f s", num_clients,
                    points[-1]["driver_cpu_s_per_step"], points[-1]["step_time_s"])
    return {"points": points, "stopped": stopped, "cpus_per_client": cpus_per_client,
            "torch_threads_per_actor": 1, "wall_s": time.perf_counter() - started}


def scale_sections(sweep: dict, large: dict) -> tuple[dict, dict]:
    """(driver-bytes-vs-block-size entry, driver-time-growth entry); ``large`` is a run with big blocks."""
    points = sweep["points"]
    small = next((p for p in points if p["num_clients"] == large["num_clients"]), None)
    if small is None:
        raise RuntimeError(f"the scale sweep has no {large['num_clients']}-client point to compare block sizes at")
    bytes_entry = ratio_entry(
        "driver bytes per inner step, large blocks ÷ tiny blocks (same clients)",
        large["driver_received_bytes_per_step"] / small["driver_received_bytes_per_step"], 1.0, "<=",
        block_bytes_ratio=max(large["block_bytes"]) / max(small["block_bytes"]),
        sent_bytes_ratio=large["driver_sent_bytes_per_step"] / small["driver_sent_bytes_per_step"],
        small=_table_row(small), large=large,
        method="pickled size of every value the driver's group and topology calls return (metrics, plans) "
               "+ mix arguments (weights, ObjectRef ids); benchmarks.system.counting",
    )
    exponent = growth_exponent([p["num_clients"] for p in points], [p["driver_cpu_s_per_step"] for p in points])
    time_entry = ratio_entry(
        "driver CPU time per inner step: growth exponent in the number of clients", exponent, 1.0, "<=",
        table=[_table_row(p) for p in points], stopped=sweep["stopped"],
        cpus_per_client=sweep["cpus_per_client"], torch_threads_per_actor=sweep["torch_threads_per_actor"],
        fit="least squares of log(driver CPU s/step) on log(clients); 1 = linear",
        wall_s=sweep["wall_s"],
    )
    return bytes_entry, time_entry


def growth_exponent(clients: Sequence[int], seconds: Sequence[float]) -> float:
    """Slope of log(seconds) against log(clients): 1 means linear growth."""
    if len(clients) < 2:
        raise ValueError("the scale sweep needs at least two points")
    xs = [math.log(c) for c in clients]
    ys = [math.log(max(s, 1e-9)) for s in seconds]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)


def _table_row(point: dict) -> dict:
    return {key: value for key, value in point.items() if key != "history"}


def _cannot_fit(num_clients: int, points: list[dict], preset: SystemPreset, budget_left_s: float) -> str | None:
    """Why a sweep point would not fit (memory or time, extrapolated linearly from the last), or None."""
    if not points:
        return None
    last = points[-1]
    scale = num_clients / last["num_clients"]
    actors = math.ceil(num_clients / clients_per_actor(num_clients, preset))
    need = last["actor_rss_bytes_median"] * actors  # tiny models: a process costs about the same hosting more
    free = psutil.virtual_memory().available
    if need > MEMORY_HEADROOM * free:
        return f"{num_clients} clients on {actors} actors need ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
    predicted = (last["actor_startup_s"] + last["steps"] * last["step_time_s"]) * scale
    if predicted > budget_left_s:
        return f"predicted {predicted:.0f} s (start-up + one round), {budget_left_s:.0f} s of the sweep budget left"
    return None


def _cpus_per_client(cluster_cpus: float, max_clients: int) -> float:
    # Ray counts CPU shares in units of 1e-4; round down so max_clients bundles always fit.
    return math.floor(cluster_cpus / max_clients * 1e4) / 1e4


def _actor_rss_bytes(group: RayClientGroup) -> list[int]:
    rss = []
    for pid in set(group.pids().values()):  # co-hosted clients share a process
        try:
            rss.append(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            continue
    return rss or [0]


def _synthetic_shard(vocab_size: int, client: int, count: int = 8, length: int = 32) -> list[EncodedExample]:
    """Random sequences: the sweep measures the runtime, not learning."""
    rng = random.Random(client)
    return [EncodedExample(tuple(rng.randrange(1, vocab_size) for _ in range(length)), length - 2)
            for _ in range(count)]
