"""``python -m benchmarks system``: issue 5's efficiency ratios, measured side by side in one run.

Sections (each a ratio with its target, written to one result file):
a. runtime_overhead — Ray runtime ÷ in-process reference loop, time per inner step;
b. exchange — exchange + mixing per inner step ÷ the same arithmetic in one process;
c. traffic — bytes per client per round, DECA ÷ full-model gossip (exactly the block share);
d. memory — per-client tensor bytes DECA ÷ full-model Adam, plus process RSS of both;
e. driver_bytes / driver_time — the driver's bytes per step do not grow with block size (tiny
   sweep blocks against section a's blocks), and its CPU time per step grows at most linearly
   with clients (the scale sweep).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

from benchmarks.results import DEFAULT_RESULTS_DIR, metadata, write_result
from benchmarks.system.memory import measure_memory
from benchmarks.system.overhead import measure_overhead
from benchmarks.system.presets import SystemPreset
from benchmarks.system.scale import run_scale_sweep, scale_sections
from benchmarks.system.traffic import traffic_section
from deca_ray.algorithm.topology import build_topology
from deca_ray.config import ModelConfig
from deca_ray.models import load_model

logger = logging.getLogger(__name__)

SECTIONS = ("runtime_overhead", "exchange", "traffic", "memory", "driver_bytes", "driver_time")
OBJECT_STORE_MB = 512


def run_system_benchmark(preset: SystemPreset, results_dir: Path = DEFAULT_RESULTS_DIR) -> Path:
    """Measure every section of ``preset`` on this machine and write one result file; returns its path."""
    started = time.perf_counter()
    meta = metadata()
    started_ray = start_ray()
    walls: dict[str, float] = {}
    try:
        sections = _measure(preset, walls)
        cluster_cpus = ray.cluster_resources().get("CPU", 0.0)
    finally:
        if started_ray:
            ray.shutdown()
    payload = {"benchmark": "system", "preset": preset.as_dict(), "metadata": meta, "ray_cluster_cpus": cluster_cpus,
               "sections": sections, "section_wall_s": walls, "wall_s": time.perf_counter() - started}
    path = write_result(payload, results_dir)
    logger.info("wrote %s", path)
    return path


def start_ray() -> bool:
    """An embedded local cluster unless one is already connected; True if started here."""
    if ray.is_initialized():
        return False
    # Ray 2.60 turns token auth on by default; an embedded cluster and its driver must agree.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", include_dashboard=False, object_store_memory=OBJECT_STORE_MB * 2**20,
             log_to_driver=False)
    return True


def _measure(preset: SystemPreset, walls: dict[str, float]) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    with _timed(walls, "runtime_overhead+exchange"):
        overhead = measure_overhead(preset)
    sections["runtime_overhead"], sections["exchange"] = overhead.runtime, overhead.exchange
    with _timed(walls, "memory"):
        sections["memory"] = measure_memory(preset, overhead.inputs.vocab_size, overhead.inputs.pad_token_id)
    with _timed(walls, "scale"):
        sweep = run_scale_sweep(preset, ray.cluster_resources().get("CPU", 1.0))
    sections["driver_bytes"], sections["driver_time"] = scale_sections(sweep, overhead.driver_traffic)
    sections["traffic"] = _traffic(sweep, preset)
    return {name: sections[name] for name in SECTIONS}


def _traffic(sweep: dict, preset: SystemPreset) -> dict:
    point = next((p for p in sweep["points"] if p["num_clients"] == preset.traffic_clients), None)
    if point is None:
        raise RuntimeError(f"the scale sweep has no {preset.traffic_clients}-client point for the traffic section")
    clients = point["num_clients"]
    topology = build_topology("ring", clients)
    model = load_model(ModelConfig(name="tiny-llama", tiny=preset.sweep_model), preset.sweep_vocab)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    degrees = {client: topology.out_degree(client) for client in range(clients)}
    return traffic_section(point["history"], point["block_bytes"], degrees, model_bytes)


@contextmanager
def _timed(walls: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        walls[name] = time.perf_counter() - started
        logger.info("%s took %.1f s", name, walls[name])
