"""Counters the system benchmark puts around the driver's collaborators: what passes through the driver.

Wrappers rather than hooks or subclasses: the runtime stays unaware of the benchmark, and the
counters see exactly the calls the driver makes, through the same public interfaces
(``ClientGroup`` for the clients, ``TopologyLike`` for the topology actor).

- received: the pickled size of every value a call returns to the driver (metric dicts,
  timings, floats, mixing plans). Block handles are left out: with Ray they are ObjectRefs
  the driver created when it submitted the half-step, not bytes it received.
- sent: the arguments of ``mix`` (mixing weights and the neighbours' handles: ObjectRef ids
  with Ray), the only call whose arguments grow with the number of neighbours.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from deca_ray.config import EvaluationConfig
from deca_ray.data.types import PreparedData
from deca_ray.runtime.driver import TopologyLike
from deca_ray.runtime.group import BlockHandle, ClientGroup, HalfStepResult
from deca_ray.runtime.topology_service import MixPlan
from deca_ray.schedule import StepMetrics

T = TypeVar("T")


def pickled_bytes(value: object) -> int:
    return len(pickle.dumps(value))


def handle_bytes(handle: BlockHandle) -> int:
    """An ObjectRef's id length; any other handle's pickled size."""
    binary = getattr(handle, "binary", None)
    return len(binary()) if callable(binary) else pickled_bytes(handle)


class CountingGroup:
    """A ClientGroup that forwards every call to ``inner`` and counts the bytes through the driver."""

    def __init__(self, inner: ClientGroup) -> None:
        self.inner = inner
        """The wrapped group, for what the ClientGroup protocol does not offer (e.g. RayClientGroup.pids)."""
        self.received_bytes = 0
        self.sent_bytes = 0

    def _received(self, value: T) -> T:
        self.received_bytes += pickled_bytes(value)
        return value

    @property
    def client_ids(self) -> list[int]:
        return self.inner.client_ids

    @property
    def num_blocks(self) -> int:
        return self.inner.num_blocks

    def begin_block(self, block_index: int) -> None:
        self.inner.begin_block(block_index)

    def half_step(self, straggler_timeout_s: float | None = None) -> HalfStepResult:
        result = self.inner.half_step(straggler_timeout_s)
        self._received(result.infos)  # the handles are the driver's own ObjectRefs
        return result

    def mix(
        self, plans: Sequence[MixPlan], handles: Mapping[int, BlockHandle], wait_for: Collection[int]
    ) -> dict[int, dict[str, float]]:
        weights = [(plan.client, plan.self_weight, [w for _, w in plan.neighbours]) for plan in plans]
        neighbours = sum(handle_bytes(handles[j]) for plan in plans for j, _ in plan.neighbours)
        self.sent_bytes += pickled_bytes(weights) + neighbours
        return self._received(self.inner.mix(plans, handles, wait_for))

    def consensus_distance(self) -> float:
        return self._received(self.inner.consensus_distance())

    def block_bytes(self, block_index: int) -> int:
        return self._received(self.inner.block_bytes(block_index))

    def evaluate_average(self, data: PreparedData, config: EvaluationConfig) -> dict[str, float]:
        return self._received(self.inner.evaluate_average(data, config))

    def evaluate_clients(self, data: PreparedData, config: EvaluationConfig) -> dict[int, dict[str, float]]:
        return self._received(self.inner.evaluate_clients(data, config))

    def trainable_states(self) -> dict[int, dict[str, torch.Tensor]]:
        return self._received(self.inner.trainable_states())

    def trained_states(self) -> dict[int, dict[str, torch.Tensor]]:
        return self._received(self.inner.trained_states())

    def save_checkpoint(self, staging: Path) -> dict[int, dict]:
        return self._received(self.inner.save_checkpoint(staging))

    def restore_checkpoint(self, checkpoint: Path, client_meta: Mapping[int, dict]) -> None:
        self.inner.restore_checkpoint(checkpoint, client_meta)

    def recover(self, clients: Collection[int]) -> None:
        self.inner.recover(clients)

    def drop(self, clients: Collection[int]) -> None:
        self.inner.drop(clients)

    def shutdown(self) -> None:
        self.inner.shutdown()


class CountingTopology:
    """The topology as the driver sees it, counting the pickled plans it receives each step."""

    def __init__(self, inner: TopologyLike) -> None:
        self.inner = inner
        self.received_bytes = 0

    def plans(self, step: int) -> list[MixPlan]:
        plans = list(self.inner.plans(step))
        self.received_bytes += pickled_bytes(plans)
        return plans

    def remove_clients(self, clients: list[int]) -> list[MixPlan]:
        plans = list(self.inner.remove_clients(clients))
        self.received_bytes += pickled_bytes(plans)
        return plans


@dataclass
class PointProbe:
    """Per-step samples of the driver's CPU time and bytes, taken in its ``on_step`` callback."""

    group: CountingGroup
    topology: CountingTopology
    cpu_s: list[float] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    _last: tuple[float, int, int] = (0.0, 0, 0)

    def start(self) -> None:
        self._last = self._now()

    def __call__(self, metrics: StepMetrics) -> None:
        now = self._now()
        self.cpu_s.append(now[0] - self._last[0])
        self.received.append(now[1] - self._last[1])
        self.sent.append(now[2] - self._last[2])
        self._last = now

    def _now(self) -> tuple[float, int, int]:
        received = self.group.received_bytes + self.topology.received_bytes
        return time.process_time(), received, self.group.sent_bytes
