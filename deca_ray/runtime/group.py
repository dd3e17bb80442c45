"""ClientGroup: what the driver needs from a set of clients, and an in-process implementation.

Clients are addressed by id (ids survive when others are dropped). The driver only passes
opaque block handles from ``half_step`` back into ``mix``; with Ray they are ObjectRefs, so
block tensors travel between clients and never through the driver. ``LocalClientGroup``
runs the same verbs on in-process ClientWorkers (debugging, tests, the ``local`` backend).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from deca_ray.algorithm.mixing import consensus_distance
from deca_ray.checkpoint import read_client_file, write_client_file
from deca_ray.client import ClientWorker
from deca_ray.config import EvaluationConfig
from deca_ray.data.types import PreparedData
from deca_ray.errors import DecaError
from deca_ray.runtime.topology_service import MixPlan

BlockHandle = Any
"""A client's half-stepped block as the group stores it (an ObjectRef with Ray)."""


class ClientFailure(DecaError):
    """Client processes died or stopped answering; the driver applies the failure policy."""

    def __init__(self, clients: Collection[int], action: str, cause: BaseException | None = None) -> None:
        self.clients = sorted(clients)
        super().__init__(f"client(s) {self.clients} failed while trying to {action}: {cause}{_likely_cause(cause)}")


_OUT_OF_MEMORY_SIGNS = ("out of memory", "outofmemory", "low on memory", "memory monitor", "oom")


def _likely_cause(cause: BaseException | None) -> str:
    """A hint for the failure users can act on: Ray's memory monitor killing the process."""
    text = f"{type(cause).__name__} {cause}".lower()
    if cause is None or not any(sign in text for sign in _OUT_OF_MEMORY_SIGNS):
        return ""
    return ("\nlikely cause: the node ran out of memory and Ray killed the client's process; lower "
            "evaluation.batch_size or evaluation.max_rows (evaluation), data.batch_size or data.max_tokens "
            "(training) or runtime.clients_per_actor, or give each client more memory")


@dataclass
class HalfStepResult:
    """Handles of every client's x½ and the metrics of those that finished in time."""

    handles: dict[int, BlockHandle]
    infos: dict[int, dict[str, float]]
    late: set[int] = field(default_factory=set)
    """Clients still computing when the straggler deadline passed (``skip`` policy)."""


class ClientGroup(Protocol):
    """One method per phase of an inner step, applied to every live client at once."""

    @property
    def client_ids(self) -> list[int]: ...

    @property
    def num_blocks(self) -> int: ...

    def begin_block(self, block_index: int) -> None: ...

    def half_step(self, straggler_timeout_s: float | None = None) -> HalfStepResult: ...

    def mix(
        self, plans: Sequence[MixPlan], handles: Mapping[int, BlockHandle], wait_for: Collection[int]
    ) -> dict[int, dict[str, float]]:
        """Mix every planned client; returns the timings of those in ``wait_for``."""
        ...

    def consensus_distance(self) -> float: ...

    def block_bytes(self, block_index: int) -> int: ...

    def evaluate_average(self, data: PreparedData, config: EvaluationConfig) -> dict[str, float]: ...

    def evaluate_clients(self, data: PreparedData, config: EvaluationConfig) -> dict[int, dict[str, float]]: ...

    def trainable_states(self) -> dict[int, dict[str, torch.Tensor]]:
        """Every live client's trainable parameters (CPU copies), e.g. to compare runs."""
        ...

    def trained_states(self) -> dict[int, dict[str, torch.Tensor]]:
        """Every live client's parameters of the blocks trained so far (CPU copies): all that differs from
        x0, e.g. to write the final model without moving the untouched layers through the driver."""
        ...

    def save_checkpoint(self, staging: Path) -> dict[int, dict]: ...

    def restore_checkpoint(self, checkpoint: Path, client_meta: Mapping[int, dict]) -> None: ...

    def recover(self, clients: Collection[int]) -> None: ...

    def drop(self, clients: Collection[int]) -> None: ...

    def shutdown(self) -> None: ...


class LocalClientGroup:
    """Clients as plain objects in this process; handles are the tensors themselves."""

    def __init__(self, clients: Sequence[ClientWorker]) -> None:
        self.clients = {client.spec.client_index: client for client in clients}
        self.num_blocks = clients[0].partition.num_blocks

    @property
    def client_ids(self) -> list[int]:
        return sorted(self.clients)

    def begin_block(self, block_index: int) -> None:
        for client in self.clients.values():
            client.begin_block(block_index)

    def half_step(self, straggler_timeout_s: float | None = None) -> HalfStepResult:
        results = {index: client.half_step() for index, client in self.clients.items()}
        return HalfStepResult({i: block for i, (block, _) in results.items()}, {i: info for i, (_, info) in results.items()})

    def mix(
        self, plans: Sequence[MixPlan], handles: Mapping[int, BlockHandle], wait_for: Collection[int]
    ) -> dict[int, dict[str, float]]:
        return {
            plan.client: self.clients[plan.client].mix([(handles[j], w) for j, w in plan.neighbours], plan.self_weight)
            for plan in plans
        }

    def consensus_distance(self) -> float:
        return consensus_distance(torch.stack([client.active_block_tensor() for client in self.clients.values()]))

    def block_bytes(self, block_index: int) -> int:
        return next(iter(self.clients.values())).block_bytes(block_index)

    def evaluate_average(self, data: PreparedData, config: EvaluationConfig) -> dict[str, float]:
        states = [client.trained_state() for client in self.clients.values()]  # the rest of x̄ is x0
        first = next(iter(self.clients.values()))
        return first.evaluate(data, config, state=first.method.average(states))

    def evaluate_clients(self, data: PreparedData, config: EvaluationConfig) -> dict[int, dict[str, float]]:
        return {index: client.evaluate(data, config) for index, client in self.clients.items()}

    def trainable_states(self) -> dict[int, dict[str, torch.Tensor]]:
        return {index: client.trainable_state() for index, client in self.clients.items()}

    def trained_states(self) -> dict[int, dict[str, torch.Tensor]]:
        return {index: client.trained_state() for index, client in self.clients.items()}

    def save_checkpoint(self, staging: Path) -> dict[int, dict]:
        metas = {}
        for index, client in self.clients.items():
            tensors, metas[index] = client.checkpoint_state()
            write_client_file(staging, index, tensors)
        return metas

    def restore_checkpoint(self, checkpoint: Path, client_meta: Mapping[int, dict]) -> None:
        for index, client in self.clients.items():
            client.restore_state(read_client_file(checkpoint, index), client_meta[index])

    def recover(self, clients: Collection[int]) -> None:
        """In-process clients never die on their own; nothing to restart."""

    def drop(self, clients: Collection[int]) -> None:
        for index in clients:
            self.clients.pop(index, None)

    def shutdown(self) -> None:
        self.clients.clear()
