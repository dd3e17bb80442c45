"""Consensus metrics without a central gather: the local figure every step, the exact one at block ends."""

from __future__ import annotations

import pytest
import torch

from deca_ray.algorithm.mixing import mix_all
from deca_ray.algorithm.topology import build_topology
from deca_ray.reference import run_reference
from deca_ray.runtime.driver import Driver
from deca_ray.runtime.group import LocalClientGroup
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import Position, StepMetrics, bytes_sent, local_consensus, mix_compute_s, schedule
from deca_ray.tracking import step_metrics
from tests.helpers import tiny_client, tiny_config


class RecordingGroup(LocalClientGroup):
    """A local group that keeps a copy of every x½ and every mix dict of the last step."""

    def half_step(self, straggler_timeout_s=None):
        result = super().half_step(straggler_timeout_s)
        self.halves = {client: block.detach().clone() for client, block in result.handles.items()}
        return result

    def mix(self, plans, handles, wait_for):
        self.mixed = super().mix(plans, handles, wait_for)
        return self.mixed


def _group(config) -> RecordingGroup:
    return RecordingGroup([tiny_client(config, index) for index in range(config.num_clients)])


def test_local_consensus_by_hand():
    # Prepare: three clients' mix reports, one with extra timing keys
    reports = [{"combine_s": 0.5, "moments_s": 0.25, "neighbourhood_distance_sq": 1.0},
               {"combine_s": 0.0, "moments_s": 0.0, "neighbourhood_distance_sq": 2.0},
               {"combine_s": 0.0, "moments_s": 0.0, "neighbourhood_distance_sq": 6.0}]
    # Execute / Assert: mean (1 + 2 + 6) / 3 = 3; timings exclude the distance
    assert local_consensus(reports) == (3.0, [1.0, 2.0, 6.0])
    assert mix_compute_s(reports[0]) == 0.75
    assert local_consensus([{"combine_s": 0.1}]) == (None, [])  # a mix that does not report it


def test_bytes_sent_by_hand():
    # Client 0 mixes in 1 and 2, client 1 mixes in 0, client 2 mixes in nobody: 0 sent once, 1 and 2 once each.
    assert bytes_sent({0: [1, 2], 1: [0], 2: []}, block_bytes=8, clients=[0, 1, 2]) == [8, 8, 8]
    assert bytes_sent({0: [1, 2], 1: [2], 2: [1]}, block_bytes=8, clients=[0, 1, 2]) == [0, 16, 16]


def test_local_consensus_on_two_clients_is_a_quarter_of_their_squared_gap():
    # Prepare: complete graph on 2 clients, MH weights 1/2: x_new_i = (x½_0 + x½_1) / 2 for both, so
    # ‖x½_i − x_new_i‖² = ‖x½_0 − x½_1‖² / 4 on each client.
    config = tiny_config(num_clients=2)
    group = _group(config)
    driver = Driver(group, TopologyService(build_topology("complete", 2)), list(schedule(2, config.algorithm, 0)))
    # Execute
    metrics = driver.step(Position(0, 0, 0, 0))
    # Assert
    gap = float(torch.sum((group.halves[0].double() - group.halves[1].double()) ** 2))
    assert gap > 0
    assert metrics.local_consensus_distance == pytest.approx(gap / 4, rel=1e-5)
    assert metrics.client_neighbourhood_distance_sq == pytest.approx([gap / 4, gap / 4], rel=1e-5)


def test_local_consensus_on_a_ring_matches_the_mixing_matrix():
    # Prepare: 4 clients on a ring; the oracle is X½ − W·X½, row by row.
    config = tiny_config(num_clients=4)
    group = _group(config)
    topology = build_topology("ring", 4)
    driver = Driver(group, TopologyService(topology), list(schedule(2, config.algorithm, 0)))
    # Execute
    metrics = driver.step(Position(0, 0, 0, 0))
    # Assert
    halves = torch.stack([group.halves[i].double() for i in range(4)])  # (n_clients, block_numel)
    expected = (halves - mix_all(topology.mixing_matrix(), halves)).square().sum(dim=1)
    assert metrics.client_neighbourhood_distance_sq == pytest.approx(expected.tolist(), rel=1e-4)
    assert metrics.local_consensus_distance == pytest.approx(float(expected.mean()), rel=1e-4)
    # mix time counts the timing keys only, not the distance the mix also reports
    assert metrics.client_mix_compute_s == [group.mixed[i]["combine_s"] + group.mixed[i]["moments_s"] for i in range(4)]


def test_exact_consensus_only_at_block_boundaries_by_default():
    # Prepare: 2 blocks × 3 inner steps
    config = tiny_config(num_clients=3)
    driver = Driver(_group(config), TopologyService(build_topology("ring", 3)), list(schedule(2, config.algorithm, 0)))
    # Execute
    history = driver.run()
    # Assert: the gather ran at the last inner step of each block; the local figure is there every step
    assert [m.position.global_step for m in history if m.consensus_distance is not None] == [2, 5]
    assert all(m.local_consensus_distance is not None for m in history)


def test_exact_consensus_every_n_steps_on_request_and_at_boundaries():
    config = tiny_config(num_clients=3)
    driver = Driver(_group(config), TopologyService(build_topology("ring", 3)), list(schedule(2, config.algorithm, 0)),
                    consensus_every_steps=2)
    history = driver.run()
    assert [m.position.global_step for m in history if m.consensus_distance is not None] == [0, 2, 4, 5]


def test_reference_loop_reports_the_same_local_consensus_as_the_driver():
    # Prepare: the same clients twice; the driver's group and the reference loop
    config = tiny_config(num_clients=3)
    topology = build_topology("ring", 3)
    driven = [tiny_client(config, index) for index in range(3)]
    reference = [tiny_client(config, index) for index in range(3)]
    # Execute
    ours = Driver(LocalClientGroup(driven), TopologyService(topology), list(schedule(2, config.algorithm, 0))).run()
    theirs = run_reference(reference, topology, config.algorithm, seed=0)
    # Assert: identical arithmetic, so identical figures (and the oracle keeps its exact figure every step)
    assert [m.local_consensus_distance for m in ours] == [m.local_consensus_distance for m in theirs]
    assert [m.bytes_sent for m in ours] == [m.bytes_sent for m in theirs]
    assert all(m.consensus_distance is not None for m in theirs)



def test_logged_step_metrics_carry_the_local_figure_and_the_exact_one_only_when_measured():
    # Prepare: a step between block boundaries (no exact figure) and one at a boundary
    between = StepMetrics(Position(0, 0, 0, 0), clients=[0, 1], client_losses=[1.0, 2.0], bytes_sent=[8, 8],
                          step_time_s=0.1, local_consensus_distance=0.5)
    boundary = StepMetrics(Position(0, 0, 2, 2), clients=[0, 1], client_losses=[1.0, 2.0], bytes_sent=[8, 8],
                           step_time_s=0.1, consensus_distance=0.25, local_consensus_distance=0.5)
    # Execute
    logged_between, logged_boundary = step_metrics(between), step_metrics(boundary)
    # Assert: MLflow gets no value (rather than a fake 0) where the gather did not run
    assert "consensus_distance" not in logged_between and logged_between["local_consensus_distance"] == 0.5
    assert logged_boundary["consensus_distance"] == 0.25
