"""Who is who on the Ray dashboard: a run's namespace, its actors' names, and where its services live.

Every actor of a run is named (``deca-client-3``, ``deca-clients-0-1`` for co-hosted virtual
clients, ``deca-topology``, ``deca-consensus``) inside a namespace of its own (``deca-<run>``),
so two runs on one cluster never collide and the dashboard's Actors page names each actor.
The run's services (topology, consensus monitor) live on the driver's node: losing a worker node
then loses only clients, which the failure policies handle.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

TOPOLOGY_ACTOR = "deca-topology"
CONSENSUS_ACTOR = "deca-consensus"


def run_namespace(run_name: str | None = None) -> str:
    """``deca-<run_name>``; a fresh ``deca-<random>`` without a run name (tests, benchmarks)."""
    return f"deca-{run_name or uuid.uuid4().hex[:12]}"


def client_actor_name(clients: Sequence[int]) -> str:
    """``deca-client-3`` for one client; ``deca-clients-0-1`` for a contiguous range, else ``deca-clients-0,2``."""
    ids = sorted(clients)
    if not ids:
        raise ValueError("an actor hosts at least one client")
    if len(ids) == 1:
        return f"deca-client-{ids[0]}"
    return f"deca-clients-{client_label(ids)}"


def client_label(clients: Sequence[int]) -> str:
    """``3``, ``0-1`` (a contiguous range) or ``0,2``: the clients an actor hosts, as the dashboard shows them."""
    ids = sorted(clients)
    if len(ids) > 1 and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}-{ids[-1]}"
    return ",".join(str(client) for client in ids)


def service_options(name: str, namespace: str) -> dict[str, Any]:
    """Actor options of a run's service: named, zero CPUs, on the driver's node.

    Pinned (not a soft preference: Ray spills soft affinity to other nodes when it likes, measured
    on a 3-node local cluster), since a service on a worker node that is lost takes the run with it;
    the driver's node always has room for an actor that needs no resources.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    driver_node = ray.get_runtime_context().get_node_id()
    return {"name": name, "namespace": namespace, "num_cpus": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=driver_node, soft=False)}
