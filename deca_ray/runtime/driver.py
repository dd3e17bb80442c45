"""The driver: walks round → block → inner step over a ClientGroup, handling only handles and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from deca_ray.config import AlgorithmConfig
from deca_ray.runtime.group import ClientGroup
from deca_ray.runtime.topology_service import MixPlan
from deca_ray.schedule import Position, StepMetrics, schedule

PlanSource = Callable[[int], Sequence[MixPlan]]
"""Mixing plans of every client at a global step (asked of the topology service)."""


class Driver:
    """Executes the schedule; each inner step is one method so tests can drive it with a fake group."""

    def __init__(
        self,
        group: ClientGroup,
        plans: PlanSource,
        num_blocks: int,
        algorithm: AlgorithmConfig,
        seed: int,
        consensus_every_steps: int = 1,
    ) -> None:
        self.group = group
        self.plans = plans
        self.num_blocks = num_blocks
        self.algorithm = algorithm
        self.seed = seed
        self.consensus_every_steps = consensus_every_steps

    def run(self, on_step: Callable[[StepMetrics], None] | None = None) -> list[StepMetrics]:
        history = []
        for position in schedule(self.num_blocks, self.algorithm, self.seed):
            metrics = self.step(position)
            history.append(metrics)
            if on_step is not None:
                on_step(metrics)
        return history

    def step(self, position: Position) -> StepMetrics:
        """One inner step: (block switch), half-step everywhere, exchange + mix, metrics."""
        started = time.perf_counter()
        if position.inner_step == 0:
            self.group.begin_block(position.block_index)
        plans = self.plans(position.global_step)
        handles, infos = self.group.half_step()
        exchange_started = time.perf_counter()
        self.group.mix(plans, handles)
        exchange_time = time.perf_counter() - exchange_started
        block_bytes = self.group.block_bytes(position.block_index)
        bytes_sent = [0] * len(infos)
        for plan in plans:
            bytes_sent[plan.client] = block_bytes * plan.out_degree
        distance = None
        if self.consensus_every_steps and position.global_step % self.consensus_every_steps == 0:
            distance = self.group.consensus_distance()
        return StepMetrics(
            position=position,
            client_losses=[info["loss"] for info in infos],
            bytes_sent=bytes_sent,
            step_time_s=time.perf_counter() - started,
            exchange_time_s=exchange_time,
            consensus_distance=distance,
            client_compute_s=[info["compute_s"] for info in infos],
            client_tokens=[info["tokens"] for info in infos],
        )
