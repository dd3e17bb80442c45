"""The driver, stepped with an in-process client group (no Ray)."""

from __future__ import annotations

import torch

from deca_ray.algorithm.topology import build_topology
from deca_ray.reference import run_reference
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.runtime.driver import Driver
from deca_ray.runtime.group import LocalClientGroup
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import Position, schedule
from tests.helpers import tiny_client, tiny_config


class OpaqueHandle:
    """Stands for an ObjectRef: the driver may pass it on but must never look inside."""

    def __init__(self, block: torch.Tensor) -> None:
        self._block = block

    def __array__(self, *args, **kwargs):
        raise AssertionError("the driver tried to read a block tensor")

    def __getattr__(self, name):
        raise AssertionError(f"the driver touched a block handle ({name})")


class OpaqueGroup(LocalClientGroup):
    """A local group whose half_step hands the driver opaque handles instead of tensors."""

    def half_step(self, straggler_timeout_s=None):
        result = super().half_step(straggler_timeout_s)
        result.handles = {client: OpaqueHandle(block) for client, block in result.handles.items()}
        return result

    def mix(self, plans, handles, wait_for):
        return super().mix(plans, {client: handle._block for client, handle in handles.items()}, wait_for)


def _clients(config):
    return [tiny_client(config, index) for index in range(config.num_clients)]


def _positions(config, num_blocks=2):
    return list(schedule(num_blocks, config.algorithm, seed=0))


def test_driver_matches_reference_loop_exactly_and_never_reads_blocks():
    # Prepare: 3 clients on a ring; the same clients twice (driver + fake group, reference loop).
    config = tiny_config(num_clients=3)
    topology = build_topology("ring", 3)
    driven, reference = _clients(config), _clients(config)
    service = TopologyService(topology)
    driver = Driver(OpaqueGroup(driven), service, _positions(config))
    # Execute
    history = driver.run()
    run_reference(reference, topology, config.algorithm, seed=0)
    # Assert
    assert len(history) == 2 * 3
    for ours, theirs in zip(driven, reference, strict=True):
        for name, value in theirs.trainable_state().items():
            torch.testing.assert_close(ours.trainable_state()[name], value, rtol=0, atol=0)


def test_bytes_sent_are_block_bytes_times_out_degree():
    config = tiny_config(num_clients=4)
    clients = _clients(config)
    service = TopologyService(build_topology("star", 4))
    driver = Driver(LocalClientGroup(clients), service, _positions(config))
    metrics = driver.step(Position(round_index=0, block_index=1, inner_step=0, global_step=0))
    block_bytes = clients[0].partition.blocks[1].numel * 4  # fp32
    assert metrics.bytes_sent == [3 * block_bytes, block_bytes, block_bytes, block_bytes]  # the hub talks to 3


def test_step_metrics_report_losses_and_consensus():
    config = tiny_config(num_clients=2)
    service = TopologyService(build_topology("complete", 2))
    # every step asks for the exact (gathered) figure; by default only block boundaries would
    driver = Driver(LocalClientGroup(_clients(config)), service, _positions(config), consensus_every_steps=1)
    metrics = driver.step(Position(0, 0, 0, 0))
    assert len(metrics.client_losses) == 2 and all(loss > 0 for loss in metrics.client_losses)
    # complete graph on 2 clients with MH weights averages exactly: consensus after one mix
    assert metrics.consensus_distance is not None and metrics.consensus_distance < 1e-10


def test_resume_reapplies_dropped_clients_restarts_and_events(tmp_path):
    # Prepare: a checkpoint after global step 2 of a run that had dropped client 2 and restarted client 1
    config = tiny_config(num_clients=4)
    checkpointer = Checkpointer(config.checkpoint, tmp_path, config.fingerprint(), config.algorithm.inner_steps)
    events = [{"at_step": 1, "what": "client(s) [2] failed (drop)", "resumed_at_step": 0}]
    checkpointer.save(LocalClientGroup(_clients(config)), 2, {"dropped": [2], "restarts": {1: 1}, "events": events})
    manifest = checkpointer.load_latest()  # through JSON, as a resumed run reads it
    group, service = LocalClientGroup(_clients(config)), TopologyService(build_topology("complete", 4))
    driver = Driver(group, service, _positions(config), config.runtime, checkpointer)
    # Execute
    start = driver.resume(manifest)
    history = driver.run()
    # Assert: survivors only, state carried on, training continued after the checkpoint
    assert start == driver.start_step == 3
    assert group.client_ids == [0, 1, 3] and list(service.topology.clients) == [0, 1, 3]
    assert driver.dropped == [2] and driver.restarts == {1: 1} and driver.events == events
    assert [m.position.global_step for m in history] == [3, 4, 5]
    assert all(m.clients == [0, 1, 3] for m in history)
