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
from deca_ray.schedule import Position, StepMetrics, bytes_sent, local_consensus, mix_compute_s, schedule


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
    mixed, senders_of = [], {}
    for index, client in enumerate(clients):
        neighbours = topology.in_neighbours(index, position.global_step)
        senders_of[index] = [j for j, _ in neighbours]
        self_weight = topology.self_weight(index, position.global_step)
        mixed.append(client.mix([(halves[j], weight) for j, weight in neighbours], self_weight))
    exchange_time = time.perf_counter() - exchange_started
    block_bytes = clients[0].block_bytes(position.block_index)
    local, per_client = local_consensus(mixed)
    return StepMetrics(
        position=position,
        clients=[client.spec.client_index for client in clients],
        client_losses=[info["loss"] for info in infos],
        bytes_sent=bytes_sent(senders_of, block_bytes, range(len(clients))),  # topology ids are list positions
        step_time_s=time.perf_counter() - started,
        exchange_time_s=exchange_time,
        # In one process the exact figure costs no gather, so the oracle reports it every step.
        consensus_distance=consensus_distance(torch.stack([c.active_block_tensor() for c in clients])),
        local_consensus_distance=local,
        client_neighbourhood_distance_sq=per_client,
        client_compute_s=[info["compute_s"] for info in infos],
        client_tokens=[info["tokens"] for info in infos],
        client_tensor_bytes=[info["tensor_bytes"] for info in infos],
        client_mix_compute_s=[mix_compute_s(timings) for timings in mixed],
    )
