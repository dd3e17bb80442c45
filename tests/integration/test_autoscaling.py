"""An autoscaling cluster on this machine: Ray's fake multi-node provider (``RAY_FAKE_CLUSTER=1``).

The head has no CPUs, so no client fits until the autoscaler adds worker nodes (one CPU each, at
most three) for the run's placement group. The run waits for them, bounded by
``runtime.placement_timeout_s``: a timeout too short for the autoscaler ends with a message saying
so, a long enough one sees the nodes arrive and trains to the same parameters as the reference loop.

``ray.cluster_utils.AutoscalingCluster`` is not used: its start and shutdown stop every Ray cluster on
the machine (not only its own), and the wheel lacks the example config it reads. The test starts the
head the same way itself (``ray start --head --autoscaling-config``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time

import psutil
import pytest
import ray
import torch

from deca_ray.algorithm.topology import build_topology
from deca_ray.client import ClientSpec
from deca_ray.errors import RuntimeSetupError
from deca_ray.reference import run_reference
from deca_ray.runtime import placement
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.runtime.driver import Driver
from deca_ray.runtime.ray_group import RayClientGroup
from deca_ray.runtime.remote_topology import RemoteTopology
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import schedule
from tests.helpers import PAD, TINY_VOCAB, synthetic_examples, tiny_client, tiny_config
from tests.integration.clusters import OBJECT_STORE_BYTES, free_port, head_node

pytestmark = [pytest.mark.integration, pytest.mark.multinode]

MAX_WORKERS = 3
SHARDS = [synthetic_examples(16, seed=i) for i in range(3)]


def autoscaling_config(gcs_address: str, max_workers: int = MAX_WORKERS) -> dict:
    """The fake provider's cluster config: a CPU-less head and up to ``max_workers`` one-CPU worker nodes."""
    return {
        "cluster_name": "deca-fake", "max_workers": max_workers,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu_worker": {"resources": {"CPU": 1, "object_store_memory": OBJECT_STORE_BYTES}, "node_config": {},
                           "min_workers": 0, "max_workers": max_workers},
        },
        "head_node_type": "ray.head.default", "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@pytest.fixture()
def autoscaling_cluster(tmp_path, request):
    """The fake autoscaling cluster, this process connected as its driver; every node stopped afterwards.
    ``request.param``: the most worker nodes the autoscaler may run (default three)."""
    from ray._private.services import get_node_ip_address

    port = free_port()
    config = tmp_path / "autoscaling.json"
    max_workers = getattr(request, "param", MAX_WORKERS)
    config.write_text(json.dumps(autoscaling_config(f"{get_node_ip_address()}:{port}", max_workers)))
    env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    if ray.is_initialized():  # the session's single-node cluster; later tests start it again
        ray.shutdown()
    with head_node(num_cpus=0, extra_args=[f"--autoscaling-config={config}"], env=env, gcs_port=port) as head:
        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address=head.gcs_address, log_to_driver=False)
        try:
            yield head
        finally:
            ray.shutdown()


def _config(placement_timeout_s: float):
    return tiny_config(num_clients=3, runtime={"cpus_per_client": 1, "torch_threads": 1,
                                               "placement_timeout_s": placement_timeout_s})


def _group(config):
    specs = [ClientSpec.from_config(config, i, PAD, TINY_VOCAB) for i in range(3)]
    return RayClientGroup(specs, SHARDS, config.runtime)


def _alive_nodes() -> list[str]:
    return [node["NodeID"] for node in ray.nodes() if node["Alive"]]


def test_the_run_waits_for_the_autoscaler_bounded_by_the_placement_timeout(autoscaling_cluster, caplog, monkeypatch):
    # Prepare: only the CPU-less head is up. The run announces its wait after a first look; that look is
    # shortened to nothing here, because the nodes the autoscaler starts for the first (too short) placement
    # may already be up when the second one asks, within the default 5 s on an idle machine
    assert len(_alive_nodes()) == 1
    monkeypatch.setattr(placement, "FIRST_LOOK_S", 0.0)
    # Execute (1): a timeout shorter than the autoscaler needs to start nodes ends with a message
    started = time.monotonic()
    with pytest.raises(RuntimeSetupError, match=r"cannot place 3 clients .* within 2 s .*autoscaler"):
        _group(_config(placement_timeout_s=2))
    assert time.monotonic() - started < 30
    # Execute (2): a long enough one waits (and says so) while worker nodes are added, then trains
    config = _config(placement_timeout_s=240)
    with caplog.at_level(logging.INFO, logger="deca_ray.runtime.placement"):
        group = _group(config)
    try:
        nodes = group.node_ids()
        driver = Driver(group, RemoteTopology(TopologyService(build_topology("ring", 3)), group.namespace),
                        list(schedule(group.num_blocks, config.algorithm, 0)), config.runtime)
        driver.run()
        states = group.trainable_states()
    finally:
        group.shutdown()
    # Assert: the autoscaler added one worker node per client, and the run equals the reference loop
    assert len(set(nodes.values())) == 3 and len(_alive_nodes()) == 1 + MAX_WORKERS
    assert any("waiting up to 240 s" in record.getMessage() for record in caplog.records)
    reference = [tiny_client(config, i, SHARDS[i]) for i in range(3)]
    run_reference(reference, build_topology("ring", 3), config.algorithm, seed=0)
    for client, state in zip(reference, states.values(), strict=True):
        for name, value in client.trainable_state().items():
            torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("autoscaling_cluster", [MAX_WORKERS + 1], indirect=True)
def test_a_lost_node_is_replaced_by_the_autoscaler_and_the_run_goes_on(autoscaling_cluster, tmp_path):
    # Prepare: three autoscaled worker nodes, one client each; room for one more node
    config = tiny_config(num_clients=3, checkpoint={"every_steps": 2}, runtime={
        "cpus_per_client": 1, "torch_threads": 1, "placement_timeout_s": 240, "failure_policy": "restart"})
    group = _group(config)
    try:
        before = group.node_ids()
        checkpointer = Checkpointer(config.checkpoint, tmp_path, config.fingerprint(), config.algorithm.inner_steps)
        driver = Driver(group, RemoteTopology(TopologyService(build_topology("ring", 3)), group.namespace),
                        list(schedule(group.num_blocks, config.algorithm, 0)), config.runtime, checkpointer)
        # Execute: after step 2, the node of client 1 dies (raylet, object store, workers: every process of it)
        history = driver.run(on_step=_kill_node_at(step=2, node_id=before[1], worker_pid=group.pids()[1]))
        after, states = group.node_ids(), group.trainable_states()
    finally:
        group.shutdown()
    # Assert: the autoscaler started a fourth node, client 1 went on there from the step-1 checkpoint
    assert driver.restarts == {1: 1} and after[1] not in before.values() and after[0] == before[0]
    assert [m.position.global_step for m in history] == list(range(6))
    reference = [tiny_client(config, i, SHARDS[i]) for i in range(3)]
    run_reference(reference, build_topology("ring", 3), config.algorithm, seed=0)
    for client, state in zip(reference, states.values(), strict=True):
        for name, value in client.trainable_state().items():
            torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-6)


def _kill_node_at(step: int, node_id: str, worker_pid: int):
    """After global ``step``, SIGKILL every process of the fake node ``node_id`` (the provider starts each
    node's processes with ``RAY_OVERRIDE_NODE_ID_FOR_TESTING`` set to its id) and the client's worker."""
    def on_step(metrics):
        if metrics.position.global_step != step or getattr(on_step, "done", False):
            return
        on_step.done = True
        doomed = [worker_pid]
        for process in psutil.process_iter():
            try:
                if process.environ().get("RAY_OVERRIDE_NODE_ID_FOR_TESTING") == node_id:
                    doomed.append(process.pid)
            except psutil.Error:
                continue
        assert len(doomed) > 1, f"no process of node {node_id} found"
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return on_step
