"""Where client actors go: the run's placement group, and the bounded waits for room in the cluster.

Both waits are bounded by ``runtime.placement_timeout_s`` and end with a message naming what did
not fit: reserving the bundles at start (an autoscaler may be adding nodes meanwhile), and a
restarted actor finding room again after its node was lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group

from deca_ray.config import RuntimeConfig
from deca_ray.errors import DecaError, RuntimeSetupError
from deca_ray.runtime.capacity import check_can_ever_fit

logger = logging.getLogger(__name__)

FIRST_LOOK_S = 5.0
"""How long placement may take before the run says it is waiting (and for how long at most)."""


def reserve(runtime: RuntimeConfig, clients_per_bundle: Sequence[int]) -> PlacementGroup:
    """One bundle per actor, sized for the clients it hosts; waits at most ``placement_timeout_s``."""
    num_clients = sum(clients_per_bundle)
    bundle = {"CPU": runtime.cpus_per_client}
    if runtime.gpus_per_client:
        bundle["GPU"] = runtime.gpus_per_client
    bundles = [{name: amount * size for name, amount in bundle.items()} for size in clients_per_bundle]
    check_can_ever_fit(runtime, bundles)  # more than the cluster will ever have fails now, not after the timeout
    group = placement_group(bundles, strategy=runtime.placement_strategy)
    timeout = runtime.placement_timeout_s
    ready, _ = ray.wait([group.ready()], timeout=min(FIRST_LOOK_S, timeout))
    if not ready and timeout > FIRST_LOOK_S:
        logger.info("waiting up to %g s (runtime.placement_timeout_s) for room for %d clients × %s (%s); "
                    "free now: %s", timeout, num_clients, bundle, runtime.placement_strategy, ray.available_resources())
        ready, _ = ray.wait([group.ready()], timeout=timeout - FIRST_LOOK_S)
    if not ready:
        remove_placement_group(group)
        raise RuntimeSetupError(
            f"cannot place {num_clients} clients × {bundle} ({runtime.placement_strategy}) within "
            f"{timeout:g} s (runtime.placement_timeout_s); the cluster has {ray.cluster_resources()} in total "
            f"and {ray.available_resources()} free (other jobs hold the rest). Lower runtime.cpus_per_client / "
            f"runtime.gpus_per_client or num_clients{_pack_hint(runtime)}, wait for the other jobs, add nodes, or "
            "raise runtime.placement_timeout_s if an autoscaler is still adding them"
        )
    return group


def _pack_hint(runtime: RuntimeConfig) -> str:
    return "" if runtime.placement_strategy == "PACK" else ", use runtime.placement_strategy PACK"


def wait_until_restarted(actor: Any, label: str, runtime: RuntimeConfig) -> None:
    """Until Ray has placed and started ``actor`` (clients ``label``) again, at most ``placement_timeout_s``.

    A lost node's actors come back only where their placement-group bundle finds room again (a
    replacement node, or free resources elsewhere); without that the wait ends with a message.
    """
    timeout = runtime.placement_timeout_s
    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=max(0.1, deadline - time.monotonic()))
            return
        except ActorUnavailableError:  # still restarting: calls fail fast until it is back
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        except GetTimeoutError:
            break
        except RayActorError as error:
            raise DecaError(
                f"client(s) {label} could not be restarted (runtime.max_restarts={runtime.max_restarts} used up, "
                f"or it dies at start): {error}"
            ) from None
    raise DecaError(
        f"client(s) {label} were not restarted within runtime.placement_timeout_s={timeout:g} s: no node has "
        f"room for them (a lost node not replaced?); free now: {ray.available_resources()}"
    )
