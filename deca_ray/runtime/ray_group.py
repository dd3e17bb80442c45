"""RayClientGroup: ClientActors placed by a placement group, each inner-step phase fanned out to all.

With ``runtime.clients_per_actor`` > 1 an actor hosts several "virtual" clients that share the
frozen base weights in memory (large simulations on few devices); everything else is unchanged,
since the group addresses clients, not actors.

The group owns placement, fan-out, the mapping of Ray errors to ClientFailure / DecaError, and
the straggler deadline; where actors go and the waits for room are ``placement``'s. Its actors are
named for the clients they host, in the run's namespace (``naming``), so the Ray dashboard says who
is who. How blocks travel is the transport's (``transports``): the driver passes the block refs on
to ``mix`` as top-level arguments, so Ray resolves them inside the receiving actor and the tensors
never pass through the driver.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
import torch
from ray.exceptions import GetTimeoutError, OutOfMemoryError, RayActorError, RayTaskError
from ray.util.placement_group import remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from deca_ray.client import ClientSpec
from deca_ray.config import EvaluationConfig, RuntimeConfig
from deca_ray.data.types import EncodedExample, PreparedData
from deca_ray.errors import DecaError
from deca_ray.runtime.actor import ClientActor
from deca_ray.runtime.consensus import ConsensusMonitor
from deca_ray.runtime.group import BlockHandle, ClientFailure, HalfStepResult
from deca_ray.runtime.naming import CONSENSUS_ACTOR, client_actor_name, client_label, run_namespace, service_options
from deca_ray.runtime.placement import reserve, wait_until_restarted
from deca_ray.runtime.topology_service import MixPlan
from deca_ray.runtime.transports import make_transport

logger = logging.getLogger(__name__)


class RayClientGroup:
    """Spawns the client actors in a placement group and fans each phase out to all of them.

    ``namespace``: the run's Ray namespace (``naming.run_namespace``; default a fresh one), where the
    actors are named ``deca-client-<i>`` (``deca-clients-<a>-<b>`` for co-hosted clients).
    """

    def __init__(
        self, specs: Sequence[ClientSpec], shards: Sequence[Sequence[EncodedExample]], runtime: RuntimeConfig,
        namespace: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.namespace = namespace or run_namespace()
        self._timeout = runtime.step_timeout_s
        per_actor = runtime.clients_per_actor
        hosted = [list(specs[start : start + per_actor]) for start in range(0, len(specs), per_actor)]
        self._placement = reserve(runtime, [len(group) for group in hosted])
        self._shards = {spec.client_index: ray.put(list(shard)) for spec, shard in zip(specs, shards, strict=True)}
        self._hosts: list[tuple[Any, list[int]]] = [
            (self._spawn(group, bundle), [spec.client_index for spec in group]) for bundle, group in enumerate(hosted)
        ]
        self.actors = {client: actor for actor, clients in self._hosts for client in clients}
        """Each client's actor (co-hosted clients share one)."""
        setups = {clients[0]: self._setup(actor, clients) for actor, clients in self._hosts}
        self.num_blocks = next(iter(self._gather(setups, "start the clients").values()))
        self._transport = make_transport(runtime.exchange)
        self._connect_transport()
        self._block_bytes: dict[int, int] = {}
        self._data_ref: ray.ObjectRef | None = None
        self._unsettled: dict[int, ray.ObjectRef] = {}  # late clients' calls not yet awaited
        monitor_options = service_options(CONSENSUS_ACTOR, self.namespace)
        monitor_class: Any = ray.remote(ConsensusMonitor)
        self._monitor = monitor_class.options(**monitor_options).remote()
        self._ask_service(self._monitor.__ray_ready__.remote(), "start the consensus monitor")

    def _spawn(self, specs: Sequence[ClientSpec], bundle: int) -> Any:
        runtime = self.runtime
        threads = runtime.torch_threads or max(1, math.ceil(runtime.cpus_per_client * len(specs)))
        return ray.remote(ClientActor).options(
            name=client_actor_name([spec.client_index for spec in specs]),
            namespace=self.namespace,
            num_cpus=runtime.cpus_per_client * len(specs),
            num_gpus=runtime.gpus_per_client * len(specs),
            max_restarts=runtime.max_restarts if runtime.failure_policy == "restart" else 0,
            max_task_retries=0,  # a failed call surfaces at once; the driver decides what to redo
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=self._placement, placement_group_bundle_index=bundle
            ),
        ).remote(specs, threads)

    def _setup(self, actor: Any, clients: Sequence[int]) -> ray.ObjectRef:
        return actor.setup.remote(*[self._shards[client] for client in clients])

    @property
    def client_ids(self) -> list[int]:
        return sorted(self.actors)

    # ------------------------------------------------------------------ inner-step phases

    def begin_block(self, block_index: int) -> None:
        self._settle()
        self._gather(self._call("begin_block", block_index), "begin a block")

    def half_step(self, straggler_timeout_s: float | None = None) -> HalfStepResult:
        self._settle()
        blocks, infos = self._submit_half_steps()
        late: set[int] = set()
        if straggler_timeout_s is not None:
            ready, _ = ray.wait(list(infos.values()), num_returns=len(infos), timeout=straggler_timeout_s)
            late = {i for i, ref in infos.items() if ref not in set(ready)}
            self._unsettled.update({i: infos[i] for i in late})
        arrived = self._gather({i: ref for i, ref in infos.items() if i not in late}, "run the local half-step")
        return HalfStepResult(blocks, arrived, late)

    def _submit_half_steps(self) -> tuple[dict[int, ray.ObjectRef], dict[int, ray.ObjectRef]]:
        """(block refs, metric refs) per client, through the configured exchange."""
        return self._transport.submit_half_steps(self.actors)

    def _connect_transport(self) -> None:
        """(Re)build what the transport needs over the live actors (RDT: a collective group)."""
        self._transport.connect([actor for actor, _ in self._hosts])

    def mix(
        self, plans: Sequence[MixPlan], handles: Mapping[int, BlockHandle], wait_for: Collection[int]
    ) -> dict[int, dict[str, float]]:
        calls = {
            plan.client: self.actors[plan.client].mix.remote(
                plan.client, plan.self_weight, [w for _, w in plan.neighbours],
                *[handles[j] for j, _ in plan.neighbours],
            )
            for plan in plans
        }
        self._unsettled.update({i: ref for i, ref in calls.items() if i not in wait_for})
        return self._gather({i: ref for i, ref in calls.items() if i in wait_for}, "exchange and mix blocks")

    def consensus_distance(self) -> float:
        self._settle()
        blocks = [actor.active_block.remote(i) for i, actor in self.actors.items()]
        return self._ask_service(self._monitor.consensus_distance.remote(*blocks), "measure consensus")

    def block_bytes(self, block_index: int) -> int:
        if block_index not in self._block_bytes:
            client, actor = next(iter(self.actors.items()))
            size = actor.block_bytes.remote(client, block_index)
            self._block_bytes[block_index] = self._gather({client: size}, "size a block")[client]
        return self._block_bytes[block_index]

    # ------------------------------------------------------------------ evaluation, checkpoints, failures

    def evaluate_average(self, data: PreparedData, config: EvaluationConfig) -> dict[str, float]:
        self._settle()
        # Only trained blocks differ between clients; the rest of x̄ is x0, already in every actor.
        states = [actor.trained_state.remote(i) for i, actor in self.actors.items()]
        client, actor = next(iter(self.actors.items()))
        score = actor.evaluate_average.remote(client, self._data(data), config, *states)
        return self._gather({client: score}, "evaluate x̄")[client]

    def evaluate_clients(self, data: PreparedData, config: EvaluationConfig) -> dict[int, dict[str, float]]:
        self._settle()
        return self._gather(self._call("evaluate", self._data(data), config), "evaluate clients")

    def trainable_states(self) -> dict[int, dict[str, torch.Tensor]]:
        self._settle()
        return self._gather(self._call("trainable_state"), "collect client states")

    def trained_states(self) -> dict[int, dict[str, torch.Tensor]]:
        self._settle()
        return self._gather(self._call("trained_state"), "collect the trained blocks")

    def save_checkpoint(self, staging: Path) -> dict[int, dict]:
        self._settle()
        return self._gather(self._call("save_checkpoint", str(staging)), "write a checkpoint")

    def restore_checkpoint(self, checkpoint: Path, client_meta: Mapping[int, dict]) -> None:
        calls = {i: actor.restore_checkpoint.remote(i, str(checkpoint), client_meta[i])
                 for i, actor in self.actors.items()}
        self._gather(calls, "restore a checkpoint")

    def recover(self, clients: Collection[int]) -> None:
        """Wait until Ray has restarted ``clients``, and set them up again (the driver restores them)."""
        self._unsettled.clear()
        for actor, hosted in self._hosts:
            if set(hosted) & set(clients):
                self._set_up_after_restart(actor, hosted)
        self._connect_transport()

    def _set_up_after_restart(self, actor: Any, clients: list[int]) -> None:
        wait_until_restarted(actor, client_label(clients), self.runtime)
        try:
            ray.get(self._setup(actor, clients), timeout=self._timeout)
        except (RayActorError, GetTimeoutError) as error:
            raise DecaError(f"client(s) {client_label(clients)} restarted but could not set up: {error}") from None

    def drop(self, clients: Collection[int]) -> None:
        """Remove ``clients``; an actor goes when none of its clients is left (they fail together)."""
        self._unsettled.clear()
        for index in clients:
            self.actors.pop(index)
        alive = []
        for actor, hosted in self._hosts:
            if any(client in self.actors for client in hosted):
                alive.append((actor, hosted))
            else:
                ray.kill(actor, no_restart=True)
        self._hosts = alive
        self._connect_transport()

    def pids(self) -> dict[int, int]:
        return self._gather(self._call("pid"), "report process ids")

    def node_ids(self) -> dict[int, str]:
        """The Ray node each client runs on."""
        return self._gather(self._call("node_id"), "report node ids")

    def shutdown(self) -> None:
        for actor in [*(actor for actor, _ in self._hosts), self._monitor]:
            ray.kill(actor, no_restart=True)
        remove_placement_group(self._placement)
        self.actors = {}

    # ------------------------------------------------------------------ helpers

    def _call(self, method: str, *args: Any) -> dict[int, ray.ObjectRef]:
        return {index: getattr(actor, method).remote(index, *args) for index, actor in self.actors.items()}

    def _settle(self) -> None:
        """Wait for calls left running by the straggler policy before the clients are used again."""
        if self._unsettled:
            pending, self._unsettled = self._unsettled, {}
            self._gather(pending, "finish a late step")

    def _gather(self, refs: Mapping[int, ray.ObjectRef], action: str) -> dict[int, Any]:
        """Results by client; every client that died or timed out is reported at once."""
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=self._timeout)
        ready_set = set(ready)
        results: dict[int, Any] = {}
        failed: set[int] = set()
        cause: BaseException | None = None
        for index, ref in refs.items():
            if ref not in ready_set:
                failed.add(index)
                cause = GetTimeoutError(f"no answer within runtime.step_timeout_s={self._timeout:g} s (raise it if "
                                        "the clients are merely slow, e.g. loading the model)")
                continue
            try:
                results[index] = ray.get(ref)
            except (RayActorError, OutOfMemoryError) as error:  # the process died (or Ray killed it for memory)
                failed.add(index)
                cause = error
            except RayTaskError as error:  # the client raised: a bug or bad input, not a dead process
                raise DecaError(f"client {index} could not {action}: {error.cause!r}") from None
        if failed:
            raise ClientFailure(failed, action, cause)
        return results

    def _ask_service(self, ref: ray.ObjectRef, action: str) -> Any:
        """A call to the consensus monitor; when it fails, a dead client (whose block it was given) is
        reported as a ClientFailure, and only a failure of the monitor itself stops the run."""
        try:
            return ray.get(ref, timeout=self._timeout)
        except (RayActorError, GetTimeoutError) as error:
            pings = {index: actor.__ray_ready__.remote() for index, actor in self.actors.items()}
            self._gather(pings, action)  # raises ClientFailure naming the clients that are gone
            raise DecaError(f"the run's consensus monitor could not {action}: {error}") from None

    def _data(self, data: PreparedData) -> ray.ObjectRef:
        """Held-out data in the object store once, without the training shards."""
        if self._data_ref is None:
            evaluation_only = PreparedData(
                task=data.task, client_shards=[], test=data.test,
                label_words=data.label_words, label_answer_ids=data.label_answer_ids,
            )
            self._data_ref = ray.put(evaluation_only)
        return self._data_ref
