"""The driver: walks round → block → inner step over a ClientGroup, handling only handles and metrics.

It also applies the reliability policies: checkpoints on schedule; a dead client is
restarted (or dropped and the graph re-weighted) and every client rolls back to the last
checkpoint; late clients are skipped after a deadline; a non-finite loss stops the run or
rolls it back once. Resuming a stopped run is the driver's too (``Driver.resume``): the
failure state it records in each checkpoint is what it restores.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from deca_ray.checkpoint import CheckpointError, Manifest
from deca_ray.config import RuntimeConfig
from deca_ray.errors import DecaError, RunInterrupted, TopologyError
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.runtime.group import ClientFailure, ClientGroup
from deca_ray.runtime.topology_service import MixPlan
from deca_ray.schedule import Position, StepMetrics, bytes_sent, local_consensus, mix_compute_s
from deca_ray.stopping import deferred, requested

logger = logging.getLogger(__name__)


class NonFiniteError(DecaError):
    """A client produced a NaN / inf loss or block."""


class TopologyLike(Protocol):
    """A TopologyService, local or behind a Ray actor."""

    def plans(self, step: int) -> Sequence[MixPlan]: ...

    def remove_clients(self, clients: list[int]) -> Sequence[MixPlan]: ...


class Driver:
    """Executes the schedule; each inner step is one method so tests can drive it with a fake group.

    ``positions``: every inner step of the run, in order (``schedule.schedule``). ``runtime``: the
    failure, straggler and NaN policies. ``checkpointer``: ready to write into the run's checkpoint
    directory (None: no checkpoints, so failures cannot be rolled back). ``consensus_every_steps``:
    0 measures the exact consensus distance (a gather of every block) at block boundaries only,
    N > 0 also every N steps. ``run_state``: caller state recorded in every checkpoint.
    """

    def __init__(
        self,
        group: ClientGroup,
        topology: TopologyLike,
        positions: Sequence[Position],
        runtime: RuntimeConfig | None = None,
        checkpointer: Checkpointer | None = None,
        consensus_every_steps: int = 0,
        run_state: Callable[[], dict[str, Any]] | None = None,
        stop_requested: Callable[[], int | None] = requested,
    ) -> None:
        if consensus_every_steps < 0:
            raise ValueError(f"consensus_every_steps={consensus_every_steps}; use 0 (block boundaries) or N > 0")
        self.group = group
        self.topology = topology
        self.positions = list(positions)
        self.runtime = runtime or RuntimeConfig()
        self.checkpointer = checkpointer
        self.consensus_every_steps = consensus_every_steps
        self.extra_run_state = run_state or dict
        self.stop_requested = stop_requested
        self.start_step = 0
        """Index into ``positions`` where ``run`` starts (set by ``resume``)."""
        self.dropped: list[int] = []
        self.restarts: dict[int, int] = {}
        self.events: list[dict[str, Any]] = []
        """Failures and what was done about them, for the run summary."""
        self._block_ends = _block_ends(self.positions)

    # ------------------------------------------------------------------ the loop

    def run(self, on_step: Callable[[StepMetrics], None] | None = None) -> list[StepMetrics]:
        """Every remaining inner step (from ``start_step``); returns their metrics, minus rolled-back ones.

        A stop signal (SIGINT / SIGTERM, ``deca_ray.stopping``) ends the run after the current inner
        step with a checkpoint there: ``RunInterrupted`` names it.
        """
        with deferred():
            return self._run(on_step)

    def _run(self, on_step: Callable[[StepMetrics], None] | None) -> list[StepMetrics]:
        positions = self.positions
        if self.checkpointer is not None and self.checkpointer.latest is None:
            self.checkpointer.save(self.group, -1, self.run_state())  # x0: what an early failure rolls back to
        history: list[StepMetrics] = []
        retried: set[int] = set()
        index = self.start_step
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
            self._stop_if_requested(position)
        return history

    def _stop_if_requested(self, position: Position) -> None:
        """A safe point (an inner step done, its checkpoint written if due): honour a stop signal here."""
        signal_number = self.stop_requested()
        if signal_number is None:
            return
        latest = self.checkpointer.latest if self.checkpointer is not None else None
        if self.checkpointer is not None and (latest is None or latest.global_step != position.global_step):
            latest = self.checkpointer.save(self.group, position.global_step, self.run_state())
        raise RunInterrupted(signal_number, position.global_step, str(latest.path) if latest is not None else None)

    def run_state(self) -> dict[str, Any]:
        """What a checkpoint records besides the clients: dropped clients, restarts, caller state."""
        return {"dropped": self.dropped, "restarts": self.restarts, "events": self.events} | self.extra_run_state()

    def resume(self, manifest: Manifest) -> int:
        """Continue a stopped run from ``manifest`` (its last checkpoint); returns the step it resumes at.

        Clients dropped before the stop leave the topology and the group again, the restart counts
        and events carry on, and every client restores the checkpoint; ``run`` then starts there.
        """
        state = manifest.run_state
        dropped = list(state.get("dropped", []))
        _check_clients(manifest, self.group.client_ids, dropped)
        if dropped:
            self.topology.remove_clients(dropped)
            self.group.drop(dropped)
        self.dropped = dropped
        self.restarts = {int(client): count for client, count in state.get("restarts", {}).items()}  # JSON keys
        self.events = list(state.get("events", []))
        self.group.restore_checkpoint(manifest.path, manifest.client_meta)
        if self.checkpointer is not None:
            self.checkpointer.latest = manifest  # what a failure after resuming rolls back to
        self.start_step = manifest.global_step + 1
        return self.start_step

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
        clients = sorted(half.infos)
        mixed = mixed or {}
        local, per_client = local_consensus([mixed.get(i, {}) for i in clients])
        senders_of = {plan.client: [j for j, _ in plan.neighbours] for plan in plans}
        exact = not half.late and self._exact_consensus_due(position)  # late blocks would skew the gather
        return StepMetrics(
            position=position,
            clients=clients,
            client_losses=[half.infos[i]["loss"] for i in clients],
            bytes_sent=bytes_sent(senders_of, self.group.block_bytes(position.block_index), clients),
            step_time_s=time.perf_counter() - started,
            exchange_time_s=exchange_time,
            consensus_distance=self.group.consensus_distance() if exact else None,
            local_consensus_distance=local,
            client_neighbourhood_distance_sq=per_client,
            client_compute_s=[half.infos[i]["compute_s"] for i in clients],
            client_tokens=[half.infos[i]["tokens"] for i in clients],
            client_tensor_bytes=[half.infos[i].get("tensor_bytes", 0.0) for i in clients],
            client_mix_compute_s=[mix_compute_s(mixed.get(i, {})) for i in clients],
            late_clients=sorted(half.late),
        )

    def _exact_consensus_due(self, position: Position) -> bool:
        """The central gather: at the end of each block activation, and every N steps if asked."""
        every = self.consensus_every_steps
        return position.global_step in self._block_ends or (every > 0 and position.global_step % every == 0)

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
            try:
                self.group.recover(failure.clients)
            except DecaError as error:  # e.g. a lost node's clients find no room within the timeout
                raise DecaError(f"{error}; stopping. {self._checkpoint_hint()}") from None
        return self._roll_back(position, reason=f"{failure} ({self.runtime.failure_policy})")

    def _roll_back(self, position: Position, reason: str) -> int:
        manifest = self.checkpointer.latest if self.checkpointer is not None else None
        if self.checkpointer is None or manifest is None:
            raise DecaError(f"{reason} at {_where(position)}, and checkpoint.enabled is false: nothing to roll back to")
        self.checkpointer.restore(self.group, manifest)
        self.events.append({"at_step": position.global_step, "what": reason,
                            "resumed_at_step": manifest.global_step + 1})
        return manifest.global_step + 1

    def _check_finite(self, infos: Mapping[int, dict[str, float]], position: Position) -> None:
        bad = [client for client, info in infos.items()
               if not (math.isfinite(info["loss"]) and info.get("finite", 1.0))]
        if bad:
            raise NonFiniteError(f"non-finite loss or block on client(s) {bad} at {_where(position)}; "
                                 "lower algorithm.lr or check the data")

    def _checkpoint_hint(self) -> str:
        if self.checkpointer is None or self.checkpointer.latest is None:
            return "No checkpoint was written (checkpoint.enabled is false)."
        return f"The last checkpoint is {self.checkpointer.latest.path} (deca-ray run --resume RUN_DIR)."


def _check_clients(manifest: Manifest, clients: Sequence[int], dropped: Sequence[int]) -> None:
    """The checkpoint must hold every live client of this run (and drop only clients it has)."""
    missing = [client for client in clients if client not in dropped and client not in manifest.client_meta]
    unknown = [client for client in dropped if client not in clients]
    if missing or unknown:
        raise CheckpointError(
            f"checkpoint {manifest.path} belongs to a run with other clients (it holds {sorted(manifest.client_meta)}, "
            f"dropped {sorted(dropped)}; this run has {sorted(clients)}); resume with the run's own config.yaml"
        )


def _block_ends(positions: Sequence[Position]) -> set[int]:
    """Global steps that end a block activation (the next step begins a block, or the run ends)."""
    following = [*positions[1:], None]
    return {p.global_step for p, after in zip(positions, following, strict=True)
            if after is None or after.inner_step == 0}


def _where(position: Position) -> str:
    return (f"round {position.round_number}, block {position.block_index}, inner step {position.step_number} "
            f"(global step {position.global_step})")
