"""Probes the scale sweep puts around the driver's collaborators to count what passes through it.

Subclass / wrapper rather than hooks in the runtime: the runtime stays unaware of the
benchmark, and the probes see exactly the calls the driver makes.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from deca_ray.runtime.group import BlockHandle
from deca_ray.runtime.ray_group import RayClientGroup, RemoteTopology
from deca_ray.runtime.topology_service import MixPlan
from deca_ray.schedule import StepMetrics


if not hasattr(RayClientGroup, "_gather"):  # the one private method counted; fail loudly if it is renamed
    raise ImportError("RayClientGroup._gather is gone: update deca_ray.bench.probes.CountingRayGroup")


class CountingRayGroup(RayClientGroup):
    """A RayClientGroup that counts the bytes passing through the driver process."""

    received_bytes = 0
    sent_bytes = 0

    def _gather(self, refs: Mapping[int, ray.ObjectRef], action: str) -> dict[int, Any]:
        results = super()._gather(refs, action)
        self.received_bytes += len(pickle.dumps(results))
        return results

    def mix(
        self, plans: Sequence[MixPlan], handles: Mapping[int, BlockHandle], wait_for: Collection[int]
    ) -> dict[int, dict[str, float]]:
        weights = [(plan.client, plan.self_weight, [w for _, w in plan.neighbours]) for plan in plans]
        refs = sum(len(handles[j].binary()) for plan in plans for j, _ in plan.neighbours)
        self.sent_bytes += len(pickle.dumps(weights)) + refs
        return super().mix(plans, handles, wait_for)


class CountingTopology:
    """RemoteTopology seen by the driver, counting the pickled plans it ``ray.get``s each step."""

    def __init__(self, remote: RemoteTopology) -> None:
        self.remote = remote
        self.received_bytes = 0

    def plans(self, step: int) -> list[MixPlan]:
        plans = self.remote.plans(step)
        self.received_bytes += len(pickle.dumps(plans))
        return plans

    def remove_clients(self, clients: list[int]) -> list[MixPlan]:
        return self.remote.remove_clients(clients)


@dataclass
class PointProbe:
    """Per-step samples taken in the driver's on_step callback."""

    group: CountingRayGroup
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
