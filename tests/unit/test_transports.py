"""The exchange transports, without a cluster: picked once by name, each submitting its own actor calls."""

from __future__ import annotations

import pytest

from deca_ray.errors import ConfigError
from deca_ray.runtime.actor import ClientActor
from deca_ray.runtime.transports import (
    TRANSPORTS,
    ObjectStoreTransport,
    RdtGlooTransport,
    RdtNcclTransport,
    make_transport,
)


class FakeMethod:
    """An actor method handle: ``.options(...).remote(...)`` returns a tag naming the call."""

    def __init__(self, name: str, num_returns: int = 1) -> None:
        self.name, self.num_returns = name, num_returns

    def options(self, num_returns: int = 1) -> FakeMethod:
        return FakeMethod(self.name, num_returns)

    def remote(self, client: int):
        tag = f"{self.name}({client})"
        return tuple(f"{tag}[{i}]" for i in range(self.num_returns)) if self.num_returns > 1 else tag


class FakeActor:
    def __getattr__(self, name: str) -> FakeMethod:
        return FakeMethod(name)


def test_make_transport_picks_one_class_per_exchange():
    assert isinstance(make_transport("object_store"), ObjectStoreTransport)
    assert isinstance(make_transport("rdt_gloo"), RdtGlooTransport)
    assert isinstance(make_transport("rdt_nccl"), RdtNcclTransport)
    with pytest.raises(ConfigError, match="choose one of object_store, rdt_gloo, rdt_nccl"):
        make_transport("carrier_pigeon")


def test_object_store_returns_block_and_metrics_of_one_two_return_call():
    blocks, infos = ObjectStoreTransport().submit_half_steps({0: FakeActor(), 3: FakeActor()})
    assert blocks == {0: "half_step(0)[0]", 3: "half_step(3)[0]"}
    assert infos == {0: "half_step(0)[1]", 3: "half_step(3)[1]"}


def test_direct_transport_calls_its_decorated_method_then_last_info():
    blocks, infos = RdtGlooTransport().submit_half_steps({1: FakeActor()})
    assert blocks == {1: "half_step_gloo(1)"} and infos == {1: "last_info(1)"}


@pytest.mark.parametrize("transport", [t for t in TRANSPORTS.values() if t is not ObjectStoreTransport])
def test_direct_transports_name_a_tensor_transport_method_of_the_actor_class(transport):
    # Ray reads @ray.method(tensor_transport=...) only from the actor class's own methods.
    method = getattr(ClientActor, transport.actor_method)
    assert getattr(method, "__ray_tensor_transport__", None) is not None
