"""Fault injection on a real local Ray cluster: SIGKILLed clients (restart / drop), stragglers."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import torch

from deca_ray.algorithm.topology import build_topology
from deca_ray.client import ClientSpec
from deca_ray.errors import DecaError
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.runtime.driver import Driver
from deca_ray.runtime.group import LocalClientGroup
from deca_ray.runtime.ray_group import RayClientGroup
from deca_ray.runtime.remote_topology import RemoteTopology
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import schedule
from tests.helpers import PAD, TINY_VOCAB, synthetic_examples, tiny_client, tiny_config

pytestmark = pytest.mark.integration

SHARDS = [synthetic_examples(16, seed=i) for i in range(4)]


def _config(**runtime):
    return tiny_config(num_clients=4, runtime={"cpus_per_client": 0.25, "torch_threads": 1, **runtime},
                       checkpoint={"every_steps": 2})


def _ray_driver(config, topology, directory):
    specs = [ClientSpec.from_config(config, i, PAD, TINY_VOCAB) for i in range(config.num_clients)]
    group = RayClientGroup(specs, SHARDS, config.runtime)
    checkpointer = Checkpointer(config.checkpoint, directory, config.fingerprint(), config.algorithm.inner_steps)
    remote = RemoteTopology(TopologyService(topology))
    positions = list(schedule(group.num_blocks, config.algorithm, 0))
    return group, remote, Driver(group, remote, positions, config.runtime, checkpointer)


def _kill_at(group, step, client):
    pids = group.pids()

    def on_step(metrics):
        if metrics.position.global_step == step and not getattr(on_step, "done", False):
            on_step.done = True
            os.kill(pids[client], signal.SIGKILL)
    return on_step


def test_sigkill_under_restart_ends_like_an_unfailed_run(ray_cluster, tmp_path):
    # Prepare: the oracle is an unfailed in-process run of the same schedule.
    config = _config(failure_policy="restart")
    topology = build_topology("ring", 4)
    local = [tiny_client(config, i, SHARDS[i]) for i in range(4)]
    Driver(LocalClientGroup(local), TopologyService(topology), list(schedule(2, config.algorithm, 0))).run()
    group, _, driver = _ray_driver(config, topology, tmp_path)
    try:
        # Execute: SIGKILL client 1's process after global step 2 (last checkpoint: step 1)
        history = driver.run(on_step=_kill_at(group, step=2, client=1))
        states = group.trainable_states()
    finally:
        group.shutdown()
    # Assert: one restart, rolled back to step 2, same final parameters as the unfailed run
    assert driver.restarts == {1: 1}
    assert [e["resumed_at_step"] for e in driver.events] == [2]
    assert [m.position.global_step for m in history] == list(range(6))
    for client, state in zip(local, states.values(), strict=True):
        for name, value in client.trainable_state().items():
            torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-6)


def test_sigkill_under_drop_reweights_the_survivors(ray_cluster, tmp_path):
    config = _config(failure_policy="drop")
    group, remote, driver = _ray_driver(config, build_topology("ring", 4), tmp_path)
    try:
        history = driver.run(on_step=_kill_at(group, step=2, client=2))
        description, survivors = remote.describe(), group.client_ids
    finally:
        group.shutdown()
    assert driver.dropped == [2] and survivors == [0, 1, 3]
    assert history[-1].clients == [0, 1, 3]
    # The ring 0-1-2-3-0 minus client 2 is the path 1-0-3: MH weights 1/3 on each edge.
    assert description["clients"] == [0, 1, 3]
    expected = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1 / 3, 2 / 3, 0], [1 / 3, 0, 2 / 3]], dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(description["mixing_matrix"], dtype=torch.float64), expected)


def test_dropping_the_hub_of_a_star_stops_with_a_clear_message(ray_cluster, tmp_path):
    config = _config(failure_policy="drop")
    group, _, driver = _ray_driver(config, build_topology("star", 4), tmp_path)
    try:
        with pytest.raises(DecaError, match="disconnected.*last checkpoint is") as error:
            driver.run(on_step=_kill_at(group, step=1, client=0))
    finally:
        group.shutdown()
    named = re.search(r"last checkpoint is (\S+) ", str(error.value)).group(1)
    assert (Path(named) / "manifest.json").is_file()  # a usable checkpoint stays


def test_straggler_is_skipped_after_the_deadline(ray_cluster, tmp_path):
    config = _config(straggler_policy="skip", straggler_timeout_s=0.5)
    group, _, driver = _ray_driver(config, build_topology("ring", 4), tmp_path)
    try:
        group.actors[3].inject_delay.remote(3.0)
        history = driver.run()
    finally:
        group.shutdown()
    assert all(m.late_clients == [3] for m in history)
    assert all(m.clients == [0, 1, 2] for m in history)
