"""The counting wrappers: every ClientGroup verb is forwarded unchanged, and the driver's bytes are counted."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from benchmarks.system.counting import CountingGroup, CountingTopology, PointProbe
from deca_ray.runtime.group import ClientGroup, HalfStepResult
from deca_ray.runtime.topology_service import MixPlan

PLANS = [MixPlan(0, 0.5, ((1, 0.25), (2, 0.25)), 2), MixPlan(1, 0.5, ((0, 0.5),), 1)]


class FakeRef:
    """An ObjectRef as the counter sees it: only its id."""

    def __init__(self, client: int) -> None:
        self.id = bytes([client]) * 28

    def binary(self) -> bytes:
        return self.id


HALF_STEP = HalfStepResult({i: FakeRef(i) for i in range(3)}, {i: {"loss": 1.0 + i} for i in range(3)})
RETURNS: dict[str, Any] = {
    "half_step": HALF_STEP, "mix": {0: {"mix_s": 0.1}, 1: {"mix_s": 0.2}}, "consensus_distance": 0.5,
    "block_bytes": 4096, "evaluate_average": {"accuracy": 0.5}, "evaluate_clients": {0: {"accuracy": 0.25}},
    "save_checkpoint": {0: {"step": 3}},
}


class RecordingGroup:
    """Answers every verb with a canned value and records how it was called."""

    client_ids = [0, 1, 2]
    num_blocks = 3

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str) -> Any:
        def verb(*args: Any) -> Any:
            self.calls.append((name, args))
            return RETURNS.get(name)

        return verb


ARGUMENTS: dict[str, tuple] = {
    "begin_block": (2,), "half_step": (1.5,), "mix": (PLANS, HALF_STEP.handles, {0}), "consensus_distance": (),
    "block_bytes": (1,), "evaluate_average": ("data", "evaluation"), "evaluate_clients": ("data", "evaluation"),
    "trainable_states": (), "trained_states": (), "save_checkpoint": (Path("staging"),), "restore_checkpoint": (Path("checkpoint"), {0: {}}),
    "recover": ([1],), "drop": ([2],), "shutdown": (),
}


def _protocol_members() -> list[str]:
    return sorted(name for name in vars(ClientGroup) if not name.startswith("_"))


def test_every_member_of_the_client_group_protocol_is_defined_by_the_wrapper():
    assert set(_protocol_members()) == set(ARGUMENTS) | {"client_ids", "num_blocks"}
    missing = [name for name in _protocol_members() if name not in vars(CountingGroup)]
    assert not missing, f"CountingGroup does not forward {missing}"


@pytest.mark.parametrize("verb", sorted(ARGUMENTS))
def test_each_verb_reaches_the_wrapped_group_unchanged(verb):
    # Prepare
    inner = RecordingGroup()
    group = CountingGroup(inner)
    # Execute
    returned = getattr(group, verb)(*ARGUMENTS[verb])
    # Assert: same call, same answer
    assert inner.calls == [(verb, ARGUMENTS[verb])]
    assert returned is RETURNS.get(verb)


def test_properties_are_the_wrapped_groups():
    group = CountingGroup(RecordingGroup())
    assert group.client_ids == [0, 1, 2] and group.num_blocks == 3


def test_the_driver_receives_metrics_but_not_the_handles_it_made():
    group = CountingGroup(RecordingGroup())
    group.half_step()
    assert group.received_bytes == len(pickle.dumps(HALF_STEP.infos)) and group.sent_bytes == 0


def test_mix_sends_the_weights_and_one_id_per_neighbour_and_receives_the_timings():
    group = CountingGroup(RecordingGroup())
    group.mix(PLANS, HALF_STEP.handles, {0, 1})
    weights = [(0, 0.5, [0.25, 0.25]), (1, 0.5, [0.5])]
    assert group.sent_bytes == len(pickle.dumps(weights)) + 3 * 28  # three (neighbour, client) pairs
    assert group.received_bytes == len(pickle.dumps(RETURNS["mix"]))


def test_the_probe_samples_the_bytes_of_each_step():
    # Prepare: a topology that hands out the same plans each step
    topology = CountingTopology(type("Plans", (), {"plans": lambda self, step: PLANS,
                                                   "remove_clients": lambda self, clients: PLANS})())
    group = CountingGroup(RecordingGroup())
    probe = PointProbe(group, topology)
    probe.start()
    # Execute: two steps as the driver takes them
    for _ in range(2):
        plans = topology.plans(0)
        group.half_step()
        group.mix(plans, HALF_STEP.handles, {0, 1})
        probe(None)
    # Assert: equal steps, equal samples; received counts the plans too
    per_step = len(pickle.dumps(PLANS)) + len(pickle.dumps(HALF_STEP.infos)) + len(pickle.dumps(RETURNS["mix"]))
    assert probe.received == [per_step, per_step] and probe.sent[0] == probe.sent[1] > 0
    assert len(probe.cpu_s) == 2
