"""RayClientGroup: one ClientWorker actor per client, placed by a placement group.

Blocks leave ``half_step`` as numpy arrays: Ray stores them in the object store once and
neighbours read them zero-copy and read-only (RAY-NOTES.md); the driver passes the
ObjectRefs on to ``mix`` as top-level arguments, so Ray resolves them inside the receiving
actor and the tensors never pass through the driver.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
import ray
import torch
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from deca_ray.algorithm.mixing import average_states, consensus_distance
from deca_ray.client import ClientSpec, ClientWorker
from deca_ray.config import EvaluationConfig, RuntimeConfig
from deca_ray.data.types import EncodedExample, PreparedData
from deca_ray.errors import RuntimeSetupError
from deca_ray.runtime.group import BlockHandle
from deca_ray.runtime.topology_service import MixPlan

logger = logging.getLogger(__name__)


class ClientActor:
    """The Ray-facing shell of a ClientWorker: tensors in and out as numpy arrays."""

    def __init__(self, spec: ClientSpec, shard: Sequence[EncodedExample], torch_threads: int) -> None:
        torch.set_num_threads(torch_threads)
        self.worker = ClientWorker(spec, shard)

    def ready(self) -> int:
        return self.worker.partition.num_blocks

    def begin_block(self, block_index: int) -> None:
        self.worker.begin_block(block_index)

    def half_step(self) -> tuple[np.ndarray, dict[str, float]]:
        x_half, info = self.worker.half_step()
        return x_half.numpy(), info  # never mutated after this: the object store may hold a view

    def mix(self, self_weight: float, weights: Sequence[float], *neighbour_blocks: np.ndarray) -> dict[str, float]:
        blocks = [_read_only_tensor(block) for block in neighbour_blocks]
        return self.worker.mix(list(zip(blocks, weights, strict=True)), self_weight)

    def active_block(self) -> np.ndarray:
        return self.worker.active_block_tensor().numpy()

    def block_bytes(self, block_index: int) -> int:
        return self.worker.block_bytes(block_index)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return self.worker.trainable_state()

    def trained_state(self) -> dict[str, torch.Tensor]:
        return self.worker.trained_state()

    def evaluate(self, data: PreparedData, config: EvaluationConfig) -> dict[str, float]:
        return self.worker.evaluate(data, config)

    def evaluate_average(
        self, data: PreparedData, config: EvaluationConfig, *states: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        return self.worker.evaluate(data, config, state=average_states(states))


def _read_only_tensor(block: np.ndarray) -> torch.Tensor:
    # Object-store arrays are read-only; torch warns on wrapping them. mix() never writes to them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(block)


@ray.remote(num_cpus=0)
def _consensus_distance_task(*blocks: np.ndarray) -> float:
    return consensus_distance(torch.stack([_read_only_tensor(block) for block in blocks]))


class RayClientGroup:
    """Spawns the client actors in a placement group and fans each phase out to all of them."""

    def __init__(
        self, specs: Sequence[ClientSpec], shards: Sequence[Sequence[EncodedExample]], runtime: RuntimeConfig
    ) -> None:
        self.runtime = runtime
        self._timeout = runtime.step_timeout_s
        self._placement = self._reserve(len(specs))
        threads = runtime.torch_threads or max(1, math.ceil(runtime.cpus_per_client))
        actor_class = ray.remote(ClientActor)
        self.actors = [
            actor_class.options(
                num_cpus=runtime.cpus_per_client,
                num_gpus=runtime.gpus_per_client,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self._placement, placement_group_bundle_index=index
                ),
                name=None,
            ).remote(spec, list(shard), threads)
            for index, (spec, shard) in enumerate(zip(specs, shards, strict=True))
        ]
        self.num_blocks = self._get([actor.ready.remote() for actor in self.actors], "start the clients")[0]
        self._block_bytes: dict[int, int] = {}
        self._data_ref: ray.ObjectRef | None = None

    # ------------------------------------------------------------------ inner-step phases

    def begin_block(self, block_index: int) -> None:
        self._get([actor.begin_block.remote(block_index) for actor in self.actors], "begin a block")

    def half_step(self) -> tuple[list[BlockHandle], list[dict[str, float]]]:
        pairs = [actor.half_step.options(num_returns=2).remote() for actor in self.actors]
        infos = self._get([info for _, info in pairs], "run the local half-step")
        return [block for block, _ in pairs], infos

    def mix(self, plans: Sequence[MixPlan], handles: Sequence[BlockHandle]) -> list[dict[str, float]]:
        calls = [
            self.actors[plan.client].mix.remote(
                plan.self_weight, [w for _, w in plan.neighbours], *[handles[j] for j, _ in plan.neighbours]
            )
            for plan in plans
        ]
        return self._get(calls, "exchange and mix blocks")

    def consensus_distance(self) -> float:
        blocks = [actor.active_block.remote() for actor in self.actors]
        return self._get(_consensus_distance_task.remote(*blocks), "measure consensus")

    def block_bytes(self, block_index: int) -> int:
        if block_index not in self._block_bytes:
            self._block_bytes[block_index] = self._get(self.actors[0].block_bytes.remote(block_index), "size a block")
        return self._block_bytes[block_index]

    # ------------------------------------------------------------------ evaluation and state

    def evaluate_average(self, data: PreparedData, config: EvaluationConfig) -> dict[str, float]:
        # Only trained blocks differ between clients; the rest of x̄ is x0, already in every actor.
        states = [actor.trained_state.remote() for actor in self.actors]
        return self._get(self.actors[0].evaluate_average.remote(self._data(data), config, *states), "evaluate x̄")

    def evaluate_clients(self, data: PreparedData, config: EvaluationConfig) -> list[dict[str, float]]:
        return self._get([a.evaluate.remote(self._data(data), config) for a in self.actors], "evaluate clients")

    def trainable_states(self) -> list[dict[str, torch.Tensor]]:
        return self._get([actor.trainable_state.remote() for actor in self.actors], "collect client states")

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        remove_placement_group(self._placement)
        self.actors = []

    # ------------------------------------------------------------------ helpers

    def _data(self, data: PreparedData) -> ray.ObjectRef:
        """Held-out data in the object store once, without the training shards."""
        if self._data_ref is None:
            evaluation_only = PreparedData(
                task=data.task, client_shards=[], test=data.test,
                label_words=data.label_words, label_answer_ids=data.label_answer_ids,
            )
            self._data_ref = ray.put(evaluation_only)
        return self._data_ref

    def _reserve(self, num_clients: int):
        bundle = {"CPU": self.runtime.cpus_per_client}
        if self.runtime.gpus_per_client:
            bundle["GPU"] = self.runtime.gpus_per_client
        group = placement_group([dict(bundle)] * num_clients, strategy=self.runtime.placement_strategy)
        ready, _ = ray.wait([group.ready()], timeout=self.runtime.placement_timeout_s)
        if not ready:
            remove_placement_group(group)
            raise RuntimeSetupError(
                f"cannot place {num_clients} clients × {bundle} ({self.runtime.placement_strategy}) within "
                f"{self.runtime.placement_timeout_s:.0f} s; the cluster has {ray.cluster_resources()} in total "
                f"and {ray.available_resources()} free. Lower runtime.cpus_per_client / runtime.gpus_per_client "
                "or num_clients, use placement_strategy PACK, or add nodes"
            )
        return group

    def _get(self, refs, action: str):
        try:
            return ray.get(refs, timeout=self._timeout)
        except GetTimeoutError:
            raise RuntimeSetupError(
                f"clients did not {action} within runtime.step_timeout_s={self._timeout:.0f} s; "
                "raise it for large models or check the Ray dashboard for stuck actors"
            ) from None
        except RayActorError as error:
            raise RuntimeSetupError(f"a client actor died while trying to {action}: {error}") from error
