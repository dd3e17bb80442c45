"""``python -m benchmarks system --cross-node``: the exchange phase across nodes against within one node.

The same clients, blocks and schedule run twice on one ``ray.cluster_utils.Cluster`` of this
machine (a CPU-less head and one raylet per client, each with its own object store): placement
``PACK`` puts every client on one node, so neighbours' blocks are read from that node's shared
memory; ``STRICT_SPREAD`` puts each on its own node, so every block a neighbour mixes in is pulled
from another node's object store by Ray's object manager. The ratio is the median exchange phase
(the driver-observed ``mix`` round: argument fetch, arithmetic, replies) spread ÷ packed; the bytes
are the blocks each placement moves per inner step and the share of them that crosses nodes.
Runs alternate (packed, spread, packed, ...) so drift on a shared machine hits both alike.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray

from benchmarks.driving import drive, stop_topology
from benchmarks.results import DEFAULT_RESULTS_DIR, metadata, write_result
from benchmarks.system.timing import median, ratio_entry, steady_steps
from deca_ray.algorithm.topology import build_topology
from deca_ray.client import ClientSpec
from deca_ray.config import ExperimentConfig, config_from_dict
from deca_ray.data.types import EncodedExample
from deca_ray.errors import DecaError
from deca_ray.runtime.ray_group import RayClientGroup
from deca_ray.runtime.remote_topology import RemoteTopology
from deca_ray.runtime.topology_service import MixPlan, TopologyService
from deca_ray.schedule import StepMetrics

logger = logging.getLogger(__name__)

KIND = "crossnode"
STRATEGIES = ("PACK", "STRICT_SPREAD")
PAD = 0


@dataclass(frozen=True)
class CrossNodePreset:
    """Sizes of the cross-node measurement (one object, recorded in the result)."""

    name: str
    num_clients: int = 3
    tiny: dict[str, Any] = field(default_factory=lambda: {
        "num_layers": 2, "hidden_size": 512, "num_heads": 8, "num_kv_heads": 4, "intermediate_size": 1024})
    """Blocks of one layer: ~2.6 M parameters, ~10 MiB exchanged per neighbour and step."""
    vocab: int = 512
    inner_steps: int = 6
    repeats: int = 2
    """Runs per placement, alternating; the first step of each block activation is left out."""
    cpus_per_client: float = 0.5
    object_store_mb: int = 150

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = CrossNodePreset(name="full")
QUICK = CrossNodePreset(name="quick", tiny={"num_layers": 2, "hidden_size": 128, "num_heads": 4, "num_kv_heads": 2,
                                            "intermediate_size": 256}, inner_steps=3, repeats=1)


def run_crossnode_benchmark(preset: CrossNodePreset, results_dir: Path = DEFAULT_RESULTS_DIR) -> Path:
    """Measure both placements on a fresh local multi-node cluster; write ``crossnode-<time>.json``."""
    if ray.is_initialized():
        raise DecaError("the cross-node benchmark starts its own multi-node cluster: run it in a fresh process")
    started, meta = time.perf_counter(), metadata()
    runs: dict[str, list[dict]] = {strategy: [] for strategy in STRATEGIES}
    with _cluster(preset):
        for _ in range(preset.repeats):
            for strategy in STRATEGIES:
                runs[strategy].append(_measure(preset, strategy))
    payload = {"benchmark": KIND, "preset": preset.as_dict(), "metadata": meta,
               "section": crossnode_section(runs), "runs": runs, "wall_s": time.perf_counter() - started}
    path = write_result(payload, results_dir, kind=KIND)
    logger.info("wrote %s", path)
    return path


@contextmanager
def _cluster(preset: CrossNodePreset) -> Iterator[Any]:
    """A CPU-less head and one worker node per client, each with room for every client (so PACK fits one)."""
    from ray.cluster_utils import Cluster

    store = preset.object_store_mb * 2**20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "object_store_memory": store})
    try:
        for _ in range(preset.num_clients):
            cluster.add_node(num_cpus=math.ceil(preset.cpus_per_client * preset.num_clients), object_store_memory=store)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if cluster.head_node is not None:
            cluster.remove_node(cluster.head_node)


def crossnode_config(preset: CrossNodePreset, strategy: str) -> ExperimentConfig:
    return config_from_dict({
        "name": f"bench-crossnode-{strategy.lower()}", "num_clients": preset.num_clients,
        "model": {"name": "tiny-llama", "tiny": preset.tiny},
        "topology": {"type": "ring"},
        "algorithm": {"rounds": 1, "inner_steps": preset.inner_steps, "lr": 1e-3,
                      "blocks": {"layers_per_block": 1, "order": "ascending"}},
        "runtime": {"cpus_per_client": preset.cpus_per_client, "torch_threads": 1, "placement_strategy": strategy},
    })


def _measure(preset: CrossNodePreset, strategy: str) -> dict:
    """One run of ``strategy``: where clients ran, the steady steps' exchange times and the bytes moved."""
    config = crossnode_config(preset, strategy)
    specs = [ClientSpec.from_config(config, i, PAD, preset.vocab) for i in range(preset.num_clients)]
    shards = [_synthetic_shard(preset.vocab, i) for i in range(preset.num_clients)]
    group = RayClientGroup(specs, shards, config.runtime)
    topology = TopologyService(build_topology("ring", preset.num_clients))
    remote = RemoteTopology(topology, group.namespace)
    try:
        nodes = group.node_ids()
        history = steady_steps(drive(group, remote, config))
        block_bytes = {k: group.block_bytes(k) for k in {m.position.block_index for m in history}}
    finally:
        group.shutdown()
        stop_topology(remote)
    run = _summarise(strategy, nodes, history, block_bytes, topology.plans(0))
    logger.info("%s: exchange %.1f ms on %d node(s)", strategy, run["exchange_s"] * 1e3, run["nodes"])
    return run


def _summarise(strategy: str, nodes: dict[int, str], history: Sequence[StepMetrics], block_bytes: dict[int, int],
               plans: Sequence[MixPlan]) -> dict:
    moved = [sum(m.bytes_sent) for m in history]
    crossing = [sum(block_bytes[m.position.block_index] for plan in plans for j, _ in plan.neighbours
                    if nodes[plan.client] != nodes[j]) for m in history]
    exchange = median([m.exchange_time_s for m in history])
    arithmetic = median([max(m.client_mix_compute_s) for m in history])
    return {"strategy": strategy, "nodes": len(set(nodes.values())), "samples": len(history),
            "exchange_s": exchange, "slowest_client_arithmetic_s": arithmetic,
            "transfer_and_scheduling_s": exchange - arithmetic, "step_s": median([m.step_time_s for m in history]),
            "bytes_per_step": median(moved), "cross_node_bytes_per_step": median(crossing),
            "block_bytes": sorted(set(block_bytes.values()))}


def crossnode_section(runs: dict[str, list[dict]]) -> dict:
    """The ratio spread ÷ packed of the median exchange phase, with both sides' figures."""
    sides = {strategy: _pooled(runs[strategy]) for strategy in STRATEGIES}
    packed, spread = sides["PACK"], sides["STRICT_SPREAD"]
    if spread["bytes_per_step"] != packed["bytes_per_step"]:
        raise RuntimeError(f"both placements must move the same blocks: {spread} vs {packed}")
    return ratio_entry("exchange phase, clients on separate nodes ÷ all on one node", spread["exchange_s"] /
                       packed["exchange_s"], None, "<=", packed=packed, spread=spread)


def _pooled(runs: Sequence[dict]) -> dict:
    """Medians over a placement's runs (each already a median over its steady steps)."""
    keys = ("exchange_s", "slowest_client_arithmetic_s", "transfer_and_scheduling_s", "step_s", "bytes_per_step",
            "cross_node_bytes_per_step")
    pooled: dict[str, Any] = {key: median([run[key] for run in runs]) for key in keys}
    pooled |= {"nodes": runs[0]["nodes"], "samples": sum(run["samples"] for run in runs),
               "block_bytes": runs[0]["block_bytes"]}
    return pooled


def _synthetic_shard(vocab_size: int, client: int, count: int = 8, length: int = 32) -> list[EncodedExample]:
    """Random sequences: this measures the exchange, not learning."""
    rng = random.Random(client)
    return [EncodedExample(tuple(rng.randrange(1, vocab_size) for _ in range(length)), length - 2)
            for _ in range(count)]
