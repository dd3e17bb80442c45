"""RemoteTopology: the TopologyService run as a Ray actor, seen through a local service's methods.

Every party asks this one owner who mixes with whom, since graphs change over time and when
clients are dropped; the driver gets only small MixPlans back.
"""

from __future__ import annotations

import ray

from deca_ray.runtime.topology_service import MixPlan, TopologyService


class RemoteTopology:
    """The TopologyService actor behind the same methods as a local TopologyService."""

    def __init__(self, service: TopologyService) -> None:
        self.actor = ray.remote(TopologyService).options(num_cpus=0).remote(service.topology)

    def plans(self, step: int) -> list[MixPlan]:
        return ray.get(self.actor.plans.remote(step))

    def remove_clients(self, clients: list[int]) -> list[MixPlan]:
        return ray.get(self.actor.remove_clients.remote(clients))

    def describe(self) -> dict:
        return ray.get(self.actor.describe.remote())

    def spectral_gap(self, step: int = 0) -> float:
        return ray.get(self.actor.spectral_gap.remote(step))
