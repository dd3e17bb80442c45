"""The runtime pieces the benchmarks handle themselves: building deca_ray's Driver (one place, as its
constructor may change) and stopping the topology actor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deca_ray.config import ExperimentConfig
from deca_ray.runtime.driver import Driver, TopologyLike
from deca_ray.runtime.group import ClientGroup
from deca_ray.runtime.remote_topology import RemoteTopology
from deca_ray.schedule import StepMetrics, schedule

CONSENSUS_EVERY_STEPS = 1
"""The consensus distance is measured at every step, as in every system result so far (it is
part of each step's time)."""


def drive(
    group: ClientGroup, topology: TopologyLike, config: ExperimentConfig,
    on_step: Callable[[StepMetrics], None] | None = None,
) -> list[StepMetrics]:
    """Train ``config``'s schedule over ``group`` once (no checkpoints, no resume); every step's metrics."""
    positions = list(schedule(group.num_blocks, config.algorithm, config.seed))
    driver = Driver(group, topology, positions, config.runtime, consensus_every_steps=CONSENSUS_EVERY_STEPS)
    return driver.run(on_step)


def stop_topology(topology: RemoteTopology) -> None:
    """Kill the topology actor (a run's own topology goes with its Ray session; a benchmark starts many)."""
    import ray

    actor: Any = topology.actor
    ray.kill(actor, no_restart=True)
