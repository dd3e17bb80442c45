"""How x½ travels from one client's half-step to its neighbours' mix: one class per exchange.

Every transport submits the half-steps of all clients and hands back two refs per client: the
block (passed on, unread, to the neighbours' ``mix`` calls, where Ray resolves it inside the
receiving actor) and the metrics dict (the only thing the driver ``ray.get``s). Ray Direct
Transport also needs a collective group over the live actors, rebuilt when actors restart or
go. ``make_transport`` picks the class once from ``runtime.exchange``; a new transport is one
class here (plus, for RDT, a decorated half-step method on ClientActor, where Ray requires it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import ray

from deca_ray.errors import ConfigError

ActorHandle = Any
"""A ClientActor handle (``ray.actor.ActorHandle``)."""

SubmittedHalfSteps = tuple[dict[int, ray.ObjectRef], dict[int, ray.ObjectRef]]
"""(block refs, metric refs), each by client id."""


class Transport(ABC):
    """The interface; connect / close do nothing by default (the object store needs no set-up)."""

    @abstractmethod
    def submit_half_steps(self, actors: Mapping[int, ActorHandle]) -> SubmittedHalfSteps:
        """Start every client's half-step (``actors``: each client's actor); returns at once."""

    def connect(self, actors: Sequence[ActorHandle]) -> None:
        """(Re)build what the transport needs over these live actors (each listed once)."""
        return None  # the object store needs nothing

    def close(self) -> None:
        """Release what ``connect`` built."""
        return None


class ObjectStoreTransport(Transport):
    """x½ as a numpy array in Ray's object store: stored once, read zero-copy by the neighbours."""

    def submit_half_steps(self, actors: Mapping[int, ActorHandle]) -> SubmittedHalfSteps:
        pairs = {i: actor.half_step.options(num_returns=2).remote(i) for i, actor in actors.items()}
        return {i: block for i, (block, _) in pairs.items()}, {i: info for i, (_, info) in pairs.items()}


class _DirectTransport(Transport):
    """Ray Direct Transport: a neighbour pulls x½ straight from the sender actor's memory.

    RDT methods return one value, so the metrics come from a second call, ``last_info``, which
    the actor runs after the half-step (calls to one actor run in order).
    """

    actor_method: ClassVar[str]
    """The ClientActor half-step decorated with this transport's ``tensor_transport``."""
    collective_backend: ClassVar[str]

    def __init__(self) -> None:
        self._group: Any = None

    def submit_half_steps(self, actors: Mapping[int, ActorHandle]) -> SubmittedHalfSteps:
        blocks = {i: getattr(actor, self.actor_method).remote(i) for i, actor in actors.items()}
        return blocks, {i: actor.last_info.remote(i) for i, actor in actors.items()}

    def connect(self, actors: Sequence[ActorHandle]) -> None:
        from ray.experimental.collective import create_collective_group  # alpha API: imported only when used

        self.close()
        self._group = create_collective_group(list(actors), backend=self.collective_backend)

    def close(self) -> None:
        if self._group is not None:
            from ray.experimental.collective import destroy_collective_group

            destroy_collective_group(self._group)
            self._group = None


class RdtGlooTransport(_DirectTransport):
    """RDT over gloo: CPU tensors, no object-store copy."""

    actor_method = "half_step_gloo"
    collective_backend = "torch_gloo"


class RdtNcclTransport(_DirectTransport):
    """RDT over NCCL: x½ stays on the sender's GPU until a neighbour pulls it (one GPU per actor)."""

    actor_method = "half_step_nccl"
    collective_backend = "nccl"


TRANSPORTS: dict[str, type[Transport]] = {
    "object_store": ObjectStoreTransport,
    "rdt_gloo": RdtGlooTransport,
    "rdt_nccl": RdtNcclTransport,
}
"""``runtime.exchange`` → transport class."""


def make_transport(exchange: str) -> Transport:
    """The transport named by ``runtime.exchange`` (its config type already limits the choice)."""
    try:
        return TRANSPORTS[exchange]()
    except KeyError:
        raise ConfigError(f"unknown runtime.exchange={exchange!r}; choose one of {', '.join(TRANSPORTS)}") from None
