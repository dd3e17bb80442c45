"""ClientActor: the Ray-facing shell of the ClientWorkers one actor hosts; tensors cross it as numpy.

A plain class, wrapped with ``ray.remote`` where RayClientGroup spawns it. With
``runtime.clients_per_actor`` > 1 it hosts several "virtual" clients that share the frozen
base weights in memory; every method names the client it is for. Its ``__repr__`` (the name Ray's
dashboard and log prefixes show) gives the clients it hosts and their active block.

The half-step has one method per exchange transport (see ``transports``): Ray reads
``@ray.method(tensor_transport=...)`` only from methods of the actor class itself, so the
Ray Direct Transport variants must live here, while the transport classes choose among them.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import ray
import torch

from deca_ray.checkpoint import read_client_file, write_client_file
from deca_ray.client import ClientSpec, ClientWorker, shared_base_model
from deca_ray.config import EvaluationConfig
from deca_ray.data.types import EncodedExample, PreparedData
from deca_ray.runtime.naming import client_label


class ClientActor:
    """Hosts ClientWorkers by client id and runs their verbs; no training logic of its own."""

    def __init__(self, specs: Sequence[ClientSpec], torch_threads: int) -> None:
        torch.set_num_threads(torch_threads)
        self.specs = list(specs)
        self.workers: dict[int, ClientWorker] = {}
        self._delay_s = 0.0
        self._info: dict[int, dict[str, float]] = {}

    def __repr__(self) -> str:
        clients = client_label([spec.client_index for spec in self.specs])
        blocks = sorted({worker.active_block for worker in self.workers.values() if worker.active_block is not None})
        return f"ClientActor(clients={clients}, block={','.join(map(str, blocks)) or '-'})"

    def setup(self, *shards: Sequence[EncodedExample]) -> int:
        """Load the model(s) and take the data shards, in spec order (again after a restart: Ray
        re-runs only __init__).

        Shards come here rather than to __init__ so that restartable actors keep no large
        constructor arguments in the object store (Ray warns they may be lost).
        """
        shared = shared_base_model(self.specs[0]) if len(self.specs) > 1 else None
        self.workers = {
            spec.client_index: ClientWorker(spec, shard, shared_base=shared)
            for spec, shard in zip(self.specs, shards, strict=True)
        }
        return next(iter(self.workers.values())).partition.num_blocks

    def pid(self, client: int) -> int:
        return os.getpid()

    def node_id(self, client: int) -> str:
        return ray.get_runtime_context().get_node_id()

    def inject_delay(self, seconds: float) -> None:
        """Fault injection for straggler tests: sleep this long in every half-step."""
        self._delay_s = seconds

    def begin_block(self, client: int, block_index: int) -> None:
        self.workers[client].begin_block(block_index)

    # ------------------------------------------------------------------ half-step, one per transport

    def half_step(self, client: int) -> tuple[np.ndarray, dict[str, float]]:
        """Object-store exchange: x½ as a numpy array (stored once, read zero-copy by neighbours)."""
        x_half, info = self._half_step(client)
        return x_half.cpu().numpy(), info  # never mutated after this: the object store may hold a view

    @ray.method(tensor_transport="gloo")
    def half_step_gloo(self, client: int) -> torch.Tensor:
        """Ray Direct Transport over gloo (CPU tensors); metrics via ``last_info``."""
        x_half, self._info[client] = self._half_step(client)
        return x_half.cpu()

    @ray.method(tensor_transport="nccl")
    def half_step_nccl(self, client: int) -> torch.Tensor:
        """Ray Direct Transport over NCCL: x½ stays on this actor's GPU until a neighbour pulls it."""
        x_half, self._info[client] = self._half_step(client)
        return x_half

    def last_info(self, client: int) -> dict[str, float]:
        """The metrics of the last direct-transport half-step (RDT methods return one value only)."""
        return self._info[client]

    def _half_step(self, client: int) -> tuple[torch.Tensor, dict[str, float]]:
        if self._delay_s:
            time.sleep(self._delay_s)
        return self.workers[client].half_step()

    # ------------------------------------------------------------------ mix and state

    def mix(
        self, client: int, self_weight: float, weights: Sequence[float], *neighbour_blocks: np.ndarray | torch.Tensor
    ) -> dict[str, float]:
        # RDT hands over tensors (never mutated here); the object store hands over read-only arrays.
        blocks = [b if isinstance(b, torch.Tensor) else read_only_tensor(b) for b in neighbour_blocks]
        return self.workers[client].mix(list(zip(blocks, weights, strict=True)), self_weight)

    def active_block(self, client: int) -> np.ndarray:
        return self.workers[client].active_block_tensor().cpu().numpy()

    def block_bytes(self, client: int, block_index: int) -> int:
        return self.workers[client].block_bytes(block_index)

    def trainable_state(self, client: int) -> dict[str, torch.Tensor]:
        return self.workers[client].trainable_state()

    def trained_state(self, client: int) -> dict[str, torch.Tensor]:
        return self.workers[client].trained_state()

    def save_checkpoint(self, client: int, staging: str) -> dict:
        # Each actor writes its own file, so checkpoint tensors never pass through the driver.
        tensors, meta = self.workers[client].checkpoint_state()
        write_client_file(Path(staging), client, tensors)
        return meta

    def restore_checkpoint(self, client: int, checkpoint: str, meta: dict) -> None:
        self.workers[client].restore_state(read_client_file(Path(checkpoint), client), meta)

    def evaluate(self, client: int, data: PreparedData, config: EvaluationConfig) -> dict[str, float]:
        return self.workers[client].evaluate(data, config)

    def evaluate_average(
        self, client: int, data: PreparedData, config: EvaluationConfig, *states: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        worker = self.workers[client]
        return worker.evaluate(data, config, state=worker.method.average(states))


def read_only_tensor(block: np.ndarray) -> torch.Tensor:
    """A tensor over an object-store array without copying it (the caller must not write to it)."""
    # Object-store arrays are read-only; torch warns on wrapping them. mix() never writes to them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(block)
