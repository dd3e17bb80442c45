"""The reference loop: all clients in one process, the oracle for the Ray runtime.

It reads like ALGORITHM.md's loop and uses the same ClientWorker verbs the Ray actors
run, so the same seed gives the same parameters; its time per inner step is the baseline
the runtime's overhead is measured against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from deca_ray.algorithm.mixing import consensus_distance
from deca_ray.algorithm.topology import Topology
from deca_ray.client import ClientWorker
from deca_ray.config import AlgorithmConfig
from deca_ray.schedule import Position, StepMetrics, schedule


def run_reference(
    clients: Sequence[ClientWorker],
    topology: Topology,
    algorithm: AlgorithmConfig,
    seed: int,
    on_step: Callable[[StepMetrics], None] | None = None,
) -> list[StepMetrics]:
    """Train ``clients`` in lockstep for the whole schedule; returns every step's metrics."""
    history: list[StepMetrics] = []
    num_blocks = clients[0].partition.num_blocks
    for position in schedule(num_blocks, algorithm, seed):
        if position.inner_step == 0:
            for client in clients:
                client.begin_block(position.block_index)
        metrics = inner_step(clients, topology, position)
        history.append(metrics)
        if on_step is not None:
            on_step(metrics)
    return history


def inner_step(clients: Sequence[ClientWorker], topology: Topology, position: Position) -> StepMetrics:
    """Half-step on every client, exchange x½ with neighbours, mix, BMA."""
    started = time.perf_counter()
    halves, infos = [], []
    for client in clients:
        x_half, info = client.half_step()
        halves.append(x_half)
        infos.append(info)
    exchange_started = time.perf_counter()
    mixed = []
    for index, client in enumerate(clients):
        neighbours = [(halves[j], weight) for j, weight in topology.in_neighbours(index, position.global_step)]
        mixed.append(client.mix(neighbours, topology.self_weight(index, position.global_step)))
    exchange_time = time.perf_counter() - exchange_started
    block_bytes = clients[0].block_bytes(position.block_index)
    return StepMetrics(
        position=position,
        clients=[client.spec.client_index for client in clients],
        client_losses=[info["loss"] for info in infos],
        bytes_sent=[block_bytes * topology.out_degree(i, position.global_step) for i in range(len(clients))],
        step_time_s=time.perf_counter() - started,
        exchange_time_s=exchange_time,
        consensus_distance=consensus_distance(torch.stack([c.active_block_tensor() for c in clients])),
        client_compute_s=[info["compute_s"] for info in infos],
        client_tokens=[info["tokens"] for info in infos],
        client_tensor_bytes=[info["tensor_bytes"] for info in infos],
        client_mix_compute_s=[sum(timings.values()) for timings in mixed],
    )
