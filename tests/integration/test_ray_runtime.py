"""The Ray runtime against the in-process reference loop, on a real local Ray cluster."""

from __future__ import annotations

import math

import pytest
import torch

from deca_ray.algorithm.topology import build_topology
from deca_ray.client import ClientSpec
from deca_ray.errors import RuntimeSetupError
from deca_ray.reference import run_reference
from deca_ray.runtime.driver import Driver
from deca_ray.runtime.ray_group import RayClientGroup
from deca_ray.runtime.remote_topology import RemoteTopology
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import schedule
from tests.helpers import PAD, TINY_VOCAB, synthetic_examples, tiny_client, tiny_config

pytestmark = pytest.mark.integration


def _ray_group(config, shards):
    specs = [ClientSpec.from_config(config, i, PAD, TINY_VOCAB) for i in range(config.num_clients)]
    return RayClientGroup(specs, shards, config.runtime)


@pytest.mark.parametrize(("exchange", "method", "clients_per_actor"), [
    ("object_store", "deca", 1), ("rdt_gloo", "deca", 1), ("object_store", "decaf", 1),
    ("object_store", "deca", 2),  # virtual clients: actors host clients [0, 1] and [2]
])
def test_ray_runtime_equals_reference_loop(ray_cluster, exchange, method, clients_per_actor):
    # Prepare: 3 clients, 2 blocks, 3 inner steps, ring; identical shards for both runs.
    lora = {"lora": {"rank": 2}} if method != "deca" else {}  # the config rejects LoRA options for full DECA
    config = tiny_config(num_clients=3, algorithm={"type": method, **lora},
                         runtime={"cpus_per_client": 0.5, "torch_threads": 1, "exchange": exchange,
                                  "clients_per_actor": clients_per_actor})
    shards = [synthetic_examples(16, seed=i) for i in range(3)]
    topology = build_topology("ring", 3)
    reference = [tiny_client(config, i, shards[i]) for i in range(3)]
    group = _ray_group(config, shards)
    positions = list(schedule(group.num_blocks, config.algorithm, seed=0))
    driver = Driver(group, RemoteTopology(TopologyService(topology)), positions)
    try:
        # Execute
        history = driver.run()
        states = group.trainable_states()
        pids = group.pids()
    finally:
        group.shutdown()
    run_reference(reference, topology, config.algorithm, seed=0)
    # Assert: same parameters; they moved away from x0; traffic is block bytes × out-degree (2 on a ring)
    x0 = tiny_client(config).trainable_state()
    for client, state in zip(reference, states.values(), strict=True):
        for name, value in client.trainable_state().items():
            torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(states[0][name], x0[name]) for name in x0)
    block_bytes = [reference[0].block_bytes(k) for k in range(reference[0].partition.num_blocks)]
    for metrics in history:
        assert metrics.bytes_sent == [block_bytes[metrics.position.block_index] * 2] * 3
    assert [m.position.block_index for m in history] == [0, 0, 0, 1, 1, 1]
    assert len(set(pids.values())) == math.ceil(3 / clients_per_actor)


def test_unplaceable_request_fails_fast_with_a_clear_message(ray_cluster):
    config = tiny_config(num_clients=2, runtime={"cpus_per_client": 64, "placement_timeout_s": 2})
    with pytest.raises(RuntimeSetupError, match=r"can never be placed: they need 128 CPU in total and the cluster has"):
        _ray_group(config, [synthetic_examples(4, seed=i) for i in range(2)])
