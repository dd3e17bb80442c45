"""The driver: walks round → block → inner step over a ClientGroup, handling only handles and metrics.

It also applies the reliability policies: checkpoints on schedule; a dead client is
restarted (or dropped and the graph re-weighted) and every client rolls back to the last
checkpoint; late clients are skipped after a deadline; a non-finite loss stops the run or
rolls it back once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from deca_ray.config import AlgorithmConfig, RuntimeConfig
from deca_ray.errors import DecaError, TopologyError
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.runtime.group import ClientFailure, ClientGroup
from deca_ray.runtime.topology_service import MixPlan
from deca_ray.schedule import Position, StepMetrics, schedule

logger = logging.getLogger(__name__)


class NonFiniteError(DecaError):
    """A client produced a NaN / inf loss or block."""


class TopologyLike(Protocol):
    """A TopologyService, local or behind a Ray actor."""

    def plans(self, step: int) -> Sequence[MixPlan]: ...

    def remove_clients(self, clients: list[int]) -> Sequence[MixPlan]: ...


class Driver:
    """Executes the schedule; each inner step is one method so tests can drive it with a fake group."""

    def __init__(
        self,
        group: ClientGroup,
        topology: TopologyLike,
        num_blocks: int,
        algorithm: AlgorithmConfig,
        seed: int,
        runtime: RuntimeConfig | None = None,
        checkpointer: Checkpointer | None = None,
        consensus_every_steps: int = 1,
        run_state: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.group = group
        self.topology = topology
        self.num_blocks = num_blocks
        self.algorithm = algorithm
        self.seed = seed
        self.runtime = runtime or RuntimeConfig()
        self.checkpointer = checkpointer
        self.consensus_every_steps = consensus_every_steps
        self.extra_run_state = run_state or dict
        self.dropped: list[int] = []
        self.restarts: dict[int, int] = {}
        self.events: list[dict[str, Any]] = []
        """Failures and what was done about them, for the run summary."""

    # ------------------------------------------------------------------ the loop

    def run(self, on_step: Callable[[StepMetrics], None] | None = None, start_step: int = 0) -> list[StepMetrics]:
        positions = list(schedule(self.num_blocks, self.algorithm, self.seed))
        if self.checkpointer is not None and self.checkpointer.latest is None:
            self.checkpointer.save(self.group, -1, self.run_state())  # x0: what an early failure rolls back to
        history: list[StepMetrics] = []
        retried: set[int] = set()
        index = start_step
        while index < len(positions):
            position = positions[index]
            try:
                metrics = self.step(position)
                if on_step is not None:
                    on_step(metrics)
                if self.checkpointer is not None and self.checkpointer.due(position):
                    self.checkpointer.save(self.group, position.global_step, self.run_state())
            except ClientFailure as failure:
                index = self._recover(failure, position)
                history = [m for m in history if m.position.global_step < index]
                continue
            except NonFiniteError as error:
                if self.runtime.nan_policy != "rollback" or position.global_step in retried:
                    raise
                retried.add(position.global_step)
                logger.warning("%s; rolling back to the last checkpoint and retrying once", error)
                index = self._roll_back(position, reason=str(error))
                history = [m for m in history if m.position.global_step < index]
                continue
            history.append(metrics)
            index += 1
        return history

    def run_state(self) -> dict[str, Any]:
        """What a checkpoint records besides the clients: dropped clients, restarts, caller state."""
        return {"dropped": self.dropped, "restarts": self.restarts, "events": self.events} | self.extra_run_state()

    # ------------------------------------------------------------------ one inner step

    def step(self, position: Position) -> StepMetrics:
        """(Block switch), half-step everywhere, exchange + mix, metrics."""
        started = time.perf_counter()
        if position.inner_step == 0:
            self.group.begin_block(position.block_index)
        plans = self.topology.plans(position.global_step)
        skip_after = self.runtime.straggler_timeout_s if self.runtime.straggler_policy == "skip" else None
        half = self.group.half_step(skip_after)
        self._check_finite(half.infos, position)
        if half.late:
            plans = [plan.without(half.late) for plan in plans]
        exchange_started = time.perf_counter()
        mixed = self.group.mix(plans, half.handles, wait_for=set(half.infos))
        exchange_time = time.perf_counter() - exchange_started
        measure = not half.late and self.consensus_every_steps and position.global_step % self.consensus_every_steps == 0
        clients = sorted(half.infos)
        sent = _bytes_sent(plans, self.group.block_bytes(position.block_index))
        return StepMetrics(
            position=position,
            clients=clients,
            client_losses=[half.infos[i]["loss"] for i in clients],
            bytes_sent=[sent.get(i, 0) for i in clients],
            step_time_s=time.perf_counter() - started,
            exchange_time_s=exchange_time,
            consensus_distance=self.group.consensus_distance() if measure else None,
            client_compute_s=[half.infos[i]["compute_s"] for i in clients],
            client_tokens=[half.infos[i]["tokens"] for i in clients],
            client_tensor_bytes=[half.infos[i].get("tensor_bytes", 0.0) for i in clients],
            client_mix_compute_s=[sum(mixed[i].values()) if mixed and i in mixed else 0.0 for i in clients],
            late_clients=sorted(half.late),
        )

    # ------------------------------------------------------------------ failures

    def _recover(self, failure: ClientFailure, position: Position) -> int:
        where = _where(position)
        logger.warning("%s at %s; policy %s", failure, where, self.runtime.failure_policy)
        if self.runtime.failure_policy == "drop":
            try:
                self.topology.remove_clients(self.dropped + failure.clients)
            except TopologyError as error:
                raise DecaError(f"{error}; stopping. {self._checkpoint_hint()}") from None
            self.group.drop(failure.clients)
            self.dropped = sorted(self.dropped + failure.clients)
        else:
            for client in failure.clients:
                self.restarts[client] = self.restarts.get(client, 0) + 1
            self.group.recover(failure.clients)
        return self._roll_back(position, reason=f"{failure} ({self.runtime.failure_policy})")

    def _roll_back(self, position: Position, reason: str) -> int:
        manifest = self.checkpointer.latest if self.checkpointer is not None else None
        if manifest is None:
            raise DecaError(f"{reason} at {_where(position)}, and checkpoint.enabled is false: nothing to roll back to")
        self.checkpointer.restore(self.group, manifest)
        self.events.append({"at_step": position.global_step, "what": reason, "resumed_at_step": manifest.global_step + 1})
        return manifest.global_step + 1

    def _check_finite(self, infos: Mapping[int, dict[str, float]], position: Position) -> None:
        bad = [client for client, info in infos.items() if not (math.isfinite(info["loss"]) and info.get("finite", 1.0))]
        if bad:
            raise NonFiniteError(f"non-finite loss or block on client(s) {bad} at {_where(position)}; "
                                 "lower algorithm.lr or check the data")

    def _checkpoint_hint(self) -> str:
        if self.checkpointer is None or self.checkpointer.latest is None:
            return "No checkpoint was written (checkpoint.enabled is false)."
        return f"The last checkpoint is {self.checkpointer.latest.path} (deca-ray run --resume RUN_DIR)."


def _bytes_sent(plans: Sequence[MixPlan], block_bytes: int) -> dict[int, int]:
    """Bytes each client's block was fetched for: once per neighbour that mixes it in."""
    sent: dict[int, int] = {}
    for plan in plans:
        for neighbour, _ in plan.neighbours:
            sent[neighbour] = sent.get(neighbour, 0) + block_bytes
    return sent


def _where(position: Position) -> str:
    return (f"round {position.round_index}, block {position.block_index}, inner step {position.inner_step} "
            f"(global step {position.global_step})")
