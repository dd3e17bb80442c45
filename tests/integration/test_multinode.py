"""Several raylets on this machine (``ray.cluster_utils.Cluster``): clients spread over nodes, blocks
crossing nodes, and whole worker nodes lost mid-run under each failure policy.

The head has no CPUs, so every client lands on a worker node; the run's services (topology, consensus
monitor) need none and stay beside the driver on the head. Checkpoints go to the test's directory,
which every "node" here shares (on a real cluster: shared storage, see deployments/kuberay).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import ray
import torch

from deca_ray.algorithm.topology import build_topology
from deca_ray.client import ClientSpec
from deca_ray.errors import DecaError
from deca_ray.reference import run_reference
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.runtime.driver import Driver
from deca_ray.runtime.ray_group import RayClientGroup
from deca_ray.runtime.remote_topology import RemoteTopology
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import schedule
from tests.helpers import PAD, TINY_VOCAB, synthetic_examples, tiny_client, tiny_config
from tests.integration.clusters import add_worker, multinode_cluster, node_of

pytestmark = [pytest.mark.integration, pytest.mark.multinode]

SHARDS = [synthetic_examples(16, seed=i) for i in range(3)]
WORKERS = [{"num_cpus": 1, "resources": {f"worker_{i}": 1}} for i in range(3)]
"""Three worker nodes with one CPU each (and a resource naming each node)."""


def _config(**runtime):
    return tiny_config(num_clients=3, checkpoint={"every_steps": 2}, runtime={
        "cpus_per_client": 0.5, "torch_threads": 1, "placement_strategy": "STRICT_SPREAD", **runtime})


def _ray_driver(config, directory):
    specs = [ClientSpec.from_config(config, i, PAD, TINY_VOCAB) for i in range(config.num_clients)]
    group = RayClientGroup(specs, SHARDS, config.runtime)
    remote = RemoteTopology(TopologyService(build_topology("ring", 3)), group.namespace)
    checkpointer = Checkpointer(config.checkpoint, directory, config.fingerprint(), config.algorithm.inner_steps)
    driver = Driver(group, remote, list(schedule(group.num_blocks, config.algorithm, 0)), config.runtime, checkpointer)
    return group, remote, driver


def _unfailed_reference(config):
    clients = [tiny_client(config, i, SHARDS[i]) for i in range(3)]
    run_reference(clients, build_topology("ring", 3), config.algorithm, seed=0)
    return clients


def _assert_same_parameters(reference, states):
    for client, state in zip(reference, states.values(), strict=True):
        for name, value in client.trainable_state().items():
            torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-6)


def _lose_node_at(cluster, group, step, client, then=None):
    """After global ``step``, kill the whole node hosting ``client``: its workers and its raylet (with its
    object store). A raylet killed alone can leave its actors answering direct calls for a while (seen on
    a loaded machine); a lost machine takes them with it at once."""
    nodes = group.node_ids()
    node = node_of(cluster, nodes[client])
    workers = [pid for other, pid in group.pids().items() if nodes[other] == nodes[client]]

    def on_step(metrics):
        if metrics.position.global_step == step and not getattr(on_step, "done", False):
            on_step.done = True
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            cluster.remove_node(node, allow_graceful=False)
            if then is not None:
                then()
    return on_step


def test_clients_on_three_nodes_exchange_across_nodes_and_equal_the_reference(tmp_path):
    config = _config()
    with multinode_cluster(WORKERS) as cluster:
        group, _, driver = _ray_driver(config, tmp_path)
        try:
            nodes = group.node_ids()
            named = ray.get_actor("deca-client-1", namespace=group.namespace)
            history = driver.run()
            states = group.trainable_states()
        finally:
            group.shutdown()
        head = cluster.head_node.node_id
    # Assert: one client per worker node (every ring edge crosses nodes), none on the head
    assert len(set(nodes.values())) == 3 and head not in nodes.values()
    assert named is not None  # the dashboard names each client actor
    assert [m.position.block_index for m in history] == [0, 0, 0, 1, 1, 1]
    _assert_same_parameters(_unfailed_reference(config), states)


def test_losing_a_node_under_drop_finishes_with_the_survivors_reweighted(tmp_path):
    config = _config(failure_policy="drop")
    with multinode_cluster(WORKERS) as cluster:
        group, remote, driver = _ray_driver(config, tmp_path)
        try:
            history = driver.run(on_step=_lose_node_at(cluster, group, step=2, client=2))
            description, survivors = remote.describe(), group.client_ids
        finally:
            group.shutdown()
    assert driver.dropped == [2] and survivors == [0, 1]
    assert history[-1].clients == [0, 1] and history[-1].position.global_step == 5
    # The triangle 0-1-2 minus client 2 is the edge 0-1: Metropolis–Hastings weights 1/2.
    torch.testing.assert_close(torch.tensor(description["mixing_matrix"], dtype=torch.float64),
                               torch.full((2, 2), 0.5, dtype=torch.float64))


def test_losing_a_node_under_restart_continues_on_a_replacement_node(tmp_path):
    config = _config(failure_policy="restart", placement_timeout_s=120)
    with multinode_cluster(WORKERS) as cluster:
        group, _, driver = _ray_driver(config, tmp_path)
        try:
            before = group.node_ids()
            replace = lambda: add_worker(cluster, num_cpus=1, resources={"worker_new": 1})  # noqa: E731
            history = driver.run(on_step=_lose_node_at(cluster, group, step=2, client=1, then=replace))
            after, states = group.node_ids(), group.trainable_states()
        finally:
            group.shutdown()
    # Assert: client 1 came back on the new node; rolled back to the step-1 checkpoint; same end state
    assert driver.restarts == {1: 1} and after[1] not in before.values() and after[0] == before[0]
    assert [e["resumed_at_step"] for e in driver.events] == [2]
    assert [m.position.global_step for m in history] == list(range(6))
    _assert_same_parameters(_unfailed_reference(config), states)


def test_losing_a_node_under_restart_without_room_stops_naming_the_last_checkpoint(tmp_path):
    # A whole CPU per client: the two nodes left are full (with half a CPU each, Ray re-places the lost
    # bundle beside a survivor even under STRICT_SPREAD, and the run simply goes on).
    config = _config(failure_policy="restart", cpus_per_client=1, placement_timeout_s=10, step_timeout_s=60)
    with multinode_cluster(WORKERS) as cluster:
        group, _, driver = _ray_driver(config, tmp_path)
        try:
            started = time.monotonic()
            with pytest.raises(DecaError, match=(r"were not restarted within runtime.placement_timeout_s=10 s.*"
                                                 r"last checkpoint is \S+")):
                driver.run(on_step=_lose_node_at(cluster, group, step=2, client=1))
            waited = time.monotonic() - started
        finally:
            group.shutdown()
    assert waited < 90  # bounded: detection + placement_timeout_s, not step_timeout_s × retries
