"""ClientGroup: what the driver needs from a set of clients, and an in-process implementation.

The driver only passes opaque block handles from ``half_step`` back into ``mix``; with Ray
they are ObjectRefs, so block tensors travel between clients and never through the driver.
``LocalClientGroup`` runs the same verbs on in-process ClientWorkers (tests, fake group).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from deca_ray.algorithm.mixing import average_states, consensus_distance
from deca_ray.client import ClientWorker
from deca_ray.config import EvaluationConfig
from deca_ray.data.types import PreparedData
from deca_ray.runtime.topology_service import MixPlan

BlockHandle = Any
"""A client's half-stepped block as the group stores it (an ObjectRef with Ray)."""


class ClientGroup(Protocol):
    """One method per phase of an inner step, applied to every client at once."""

    num_blocks: int

    def begin_block(self, block_index: int) -> None: ...

    def half_step(self) -> tuple[list[BlockHandle], list[dict[str, float]]]: ...

    def mix(self, plans: Sequence[MixPlan], handles: Sequence[BlockHandle]) -> list[dict[str, float]]: ...

    def consensus_distance(self) -> float: ...

    def block_bytes(self, block_index: int) -> int: ...

    def evaluate_average(self, data: PreparedData, config: EvaluationConfig) -> dict[str, float]: ...

    def evaluate_clients(self, data: PreparedData, config: EvaluationConfig) -> list[dict[str, float]]: ...

    def trainable_states(self) -> list[dict[str, torch.Tensor]]: ...

    def shutdown(self) -> None: ...


class LocalClientGroup:
    """Clients as plain objects in this process; handles are the tensors themselves."""

    def __init__(self, clients: Sequence[ClientWorker]) -> None:
        self.clients = list(clients)
        self.num_blocks = self.clients[0].partition.num_blocks

    def begin_block(self, block_index: int) -> None:
        for client in self.clients:
            client.begin_block(block_index)

    def half_step(self) -> tuple[list[BlockHandle], list[dict[str, float]]]:
        results = [client.half_step() for client in self.clients]
        return [block for block, _ in results], [info for _, info in results]

    def mix(self, plans: Sequence[MixPlan], handles: Sequence[BlockHandle]) -> list[dict[str, float]]:
        return [
            self.clients[plan.client].mix([(handles[j], w) for j, w in plan.neighbours], plan.self_weight)
            for plan in plans
        ]

    def consensus_distance(self) -> float:
        return consensus_distance(torch.stack([client.active_block_tensor() for client in self.clients]))

    def block_bytes(self, block_index: int) -> int:
        return self.clients[0].block_bytes(block_index)

    def evaluate_average(self, data: PreparedData, config: EvaluationConfig) -> dict[str, float]:
        states = [client.trained_state() for client in self.clients]  # the rest of x̄ is x0
        return self.clients[0].evaluate(data, config, state=average_states(states))

    def evaluate_clients(self, data: PreparedData, config: EvaluationConfig) -> list[dict[str, float]]:
        return [client.evaluate(data, config) for client in self.clients]

    def trainable_states(self) -> list[dict[str, torch.Tensor]]:
        return [client.trainable_state() for client in self.clients]

    def shutdown(self) -> None:
        self.clients.clear()
