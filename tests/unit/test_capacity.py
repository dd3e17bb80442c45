"""A placement request the cluster can never hold fails at once, with hints that apply (no Ray cluster)."""

from __future__ import annotations

import pytest

from deca_ray.config import RuntimeConfig
from deca_ray.errors import RuntimeSetupError
from deca_ray.runtime import capacity
from deca_ray.runtime.placement import _pack_hint


def _cluster(monkeypatch, total, nodes=None, autoscaled=False):
    monkeypatch.setattr(capacity, "_ceiling", lambda: (total, autoscaled))
    node_list = [{"Alive": True, "Resources": node} for node in (nodes or [total])]
    monkeypatch.setattr(capacity.ray, "nodes", lambda: node_list)


def test_more_cpus_than_the_cluster_has_fail_at_once_without_a_pack_hint(monkeypatch):
    _cluster(monkeypatch, {"CPU": 2.0})
    with pytest.raises(RuntimeSetupError) as error:
        capacity.check_can_ever_fit(RuntimeConfig(cpus_per_client=64), [{"CPU": 64.0}, {"CPU": 64.0}])
    assert "they need 128 CPU in total and the cluster has 2" in str(error.value)
    assert "runtime.cpus_per_client" in str(error.value) and "PACK" not in str(error.value)


def test_a_gpu_on_a_cluster_without_one_says_set_gpus_per_client_to_0(monkeypatch):
    _cluster(monkeypatch, {"CPU": 8.0})
    with pytest.raises(RuntimeSetupError, match="no GPU: set runtime.gpus_per_client=0"):
        capacity.check_can_ever_fit(RuntimeConfig(gpus_per_client=1), [{"CPU": 0.5, "GPU": 1.0}])


def test_strict_spread_needs_a_node_per_actor(monkeypatch):
    _cluster(monkeypatch, {"CPU": 8.0}, nodes=[{"CPU": 4.0}, {"CPU": 4.0}])
    with pytest.raises(RuntimeSetupError, match="STRICT_SPREAD puts each of the 3 actors on its own node"):
        capacity.check_can_ever_fit(RuntimeConfig(placement_strategy="STRICT_SPREAD"), [{"CPU": 1.0}] * 3)


def test_an_actor_larger_than_any_node_cannot_be_placed(monkeypatch):
    _cluster(monkeypatch, {"CPU": 8.0}, nodes=[{"CPU": 4.0}, {"CPU": 4.0}])
    with pytest.raises(RuntimeSetupError, match="one actor needs 6 CPU and the largest node has 4"):
        capacity.check_can_ever_fit(RuntimeConfig(), [{"CPU": 6.0}])


def test_what_fits_and_an_autoscaler_of_unknown_size_pass(monkeypatch):
    _cluster(monkeypatch, {"CPU": 2.0})
    capacity.check_can_ever_fit(RuntimeConfig(), [{"CPU": 1.0}, {"CPU": 1.0}])
    _cluster(monkeypatch, None, nodes=[{"CPU": 2.0}], autoscaled=True)
    capacity.check_can_ever_fit(RuntimeConfig(), [{"CPU": 64.0}])


def test_the_timeout_message_suggests_pack_only_when_another_strategy_is_set():
    assert _pack_hint(RuntimeConfig(placement_strategy="PACK")) == ""
    assert "PACK" in _pack_hint(RuntimeConfig(placement_strategy="SPREAD"))
