"""RemoteTopology: the TopologyService run as a Ray actor, seen through a local service's methods.

Every party asks this one owner who mixes with whom, since graphs change over time and when
clients are dropped; the driver gets only small MixPlans back.
"""

from __future__ import annotations

from typing import Any

import ray

from deca_ray.runtime.naming import TOPOLOGY_ACTOR, run_namespace, service_options
from deca_ray.runtime.topology_service import MixPlan, TopologyService


class RemoteTopology:
    """The TopologyService actor behind the same methods as a local TopologyService.

    ``namespace``: the run's (``naming.run_namespace``), shared with its client actors; the actor is
    ``deca-topology`` there, on the driver's node when it has room.
    """

    def __init__(self, service: TopologyService, namespace: str | None = None) -> None:
        options = service_options(TOPOLOGY_ACTOR, namespace or run_namespace())
        service_class: Any = ray.remote(TopologyService)
        self.actor = service_class.options(**options).remote(service.topology)

    def plans(self, step: int) -> list[MixPlan]:
        return ray.get(self.actor.plans.remote(step))

    def remove_clients(self, clients: list[int]) -> list[MixPlan]:
        return ray.get(self.actor.remove_clients.remote(clients))

    def describe(self) -> dict:
        return ray.get(self.actor.describe.remote())

    def spectral_gap(self, step: int = 0) -> float:
        return ray.get(self.actor.spectral_gap.remote(step))
