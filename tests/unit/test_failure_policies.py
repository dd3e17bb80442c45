"""Driver policies without Ray: NaN guard (stop / rollback), drop re-weighting, no checkpoint to fall back on."""

from __future__ import annotations

import math

import pytest
import torch

from deca_ray.algorithm.topology import build_topology
from deca_ray.errors import DecaError
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.runtime.driver import Driver, NonFiniteError
from deca_ray.runtime.group import ClientFailure, LocalClientGroup
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import schedule
from tests.helpers import tiny_client, tiny_config


def _driver(tmp_path, nan_policy="stop", failure_policy="restart", checkpoints=True, topology="ring"):
    # Checkpoints at block boundaries only (and x0 before the first step).
    config = tiny_config(num_clients=3, runtime={"nan_policy": nan_policy, "failure_policy": failure_policy})
    group = LocalClientGroup([tiny_client(config, i) for i in range(3)])
    checkpointer = Checkpointer(config.checkpoint, tmp_path, config.fingerprint(), 3) if checkpoints else None
    service = TopologyService(build_topology(topology, 3))
    return group, Driver(group, service, list(schedule(2, config.algorithm, 0)), config.runtime, checkpointer), service


def _poison_once(group, at_step, client):
    """After ``at_step``, client's active block turns NaN (once)."""
    def on_step(metrics):
        if metrics.position.global_step == at_step and not getattr(on_step, "done", False):
            on_step.done = True
            group.clients[client].active_block_tensor().fill_(math.nan)
    return on_step


def test_nan_stops_naming_client_round_block_and_step(tmp_path):
    group, driver, _ = _driver(tmp_path)
    with pytest.raises(NonFiniteError, match=r"client\(s\) \[1\] at round 1, block 0, inner step 3"):
        driver.run(on_step=_poison_once(group, at_step=1, client=1))


def test_nan_rollback_restores_the_last_checkpoint_and_finishes(tmp_path):
    group, driver, _ = _driver(tmp_path, nan_policy="rollback")
    history = driver.run(on_step=_poison_once(group, at_step=0, client=1))
    assert [m.position.global_step for m in history] == list(range(6))
    assert driver.events[0]["resumed_at_step"] == 0  # back to the x0 checkpoint
    assert all(torch.isfinite(v).all() for c in group.clients.values() for v in c.trainable_state().values())


class _FailingOnce(LocalClientGroup):
    """Client 2 'dies' once during the half-step of global step 3."""

    def __init__(self, clients):
        super().__init__(clients)
        self.calls = 0

    def half_step(self, straggler_timeout_s=None):
        self.calls += 1
        if self.calls == 4 and 2 in self.clients:
            raise ClientFailure([2], "run the local half-step", RuntimeError("SIGKILL"))
        return super().half_step(straggler_timeout_s)


def test_drop_reweights_survivors_and_rolls_back(tmp_path):
    config = tiny_config(num_clients=4, runtime={"failure_policy": "drop"}, checkpoint={"every_steps": 2})
    group = _FailingOnce([tiny_client(config, i) for i in range(4)])
    service = TopologyService(build_topology("complete", 4))
    checkpointer = Checkpointer(config.checkpoint, tmp_path, config.fingerprint(), 3)
    driver = Driver(group, service, list(schedule(2, config.algorithm, 0)), config.runtime, checkpointer)
    history = driver.run()
    assert driver.dropped == [2] and sorted(group.clients) == [0, 1, 3]
    assert driver.events[0]["resumed_at_step"] == 3  # last checkpoint: the block boundary after step 2
    assert history[-1].clients == [0, 1, 3]
    matrix = torch.tensor(service.describe()["mixing_matrix"], dtype=torch.float64)
    torch.testing.assert_close(matrix, torch.full((3, 3), 1 / 3, dtype=torch.float64))  # K3 with MH weights


def test_failure_without_checkpoints_says_so(tmp_path):
    config = tiny_config(num_clients=3)
    group = _FailingOnce([tiny_client(config, i) for i in range(3)])
    positions = list(schedule(2, config.algorithm, 0))
    driver = Driver(group, TopologyService(build_topology("ring", 3)), positions, config.runtime, None)
    with pytest.raises(DecaError, match="checkpoint.enabled is false: nothing to roll back to"):
        driver.run()


def test_a_client_killed_for_memory_is_named_with_the_likely_cause_and_what_to_lower():
    from ray.exceptions import OutOfMemoryError

    oom = ClientFailure([3], "evaluate x̄", OutOfMemoryError("Task was killed due to the node running low on memory."))
    crash = ClientFailure([3], "evaluate x̄", RuntimeError("SIGKILL"))

    assert "client(s) [3] failed while trying to evaluate x̄" in str(oom)
    assert "likely cause: the node ran out of memory" in str(oom) and "evaluation.max_rows" in str(oom)
    assert "likely cause" not in str(crash)


def test_a_rollback_inside_a_run_logs_each_step_once_to_mlflow(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from deca_ray.client.worker import ClientWorker
    from deca_ray.history import FILE_NAME, StepHistory
    from deca_ray.runner import run_experiment

    half_step = ClientWorker.half_step
    calls = {"client 1": 0}

    def poisoned_once(self):  # client 1's x½ of its 5th step (global step 4) is NaN, once
        x_half, info = half_step(self)
        if self.spec.client_index == 1:
            calls["client 1"] += 1
            if calls["client 1"] == 5:
                x_half.fill_(math.nan)
        return x_half, info

    monkeypatch.setattr(ClientWorker, "half_step", poisoned_once)
    config = tiny_config(num_clients=3, data={"max_train_examples": 24, "test_size": 6, "body_words": 12},
                         runtime={"backend": "local", "nan_policy": "rollback"},
                         evaluation={"before_training": False, "per_client": False},
                         tracking={"output_dir": str(tmp_path / "runs"),
                                   "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"})

    result = run_experiment(config)

    assert result.summary["events"], "the NaN made the driver roll back"
    points = MlflowClient(result.tracking_uri).get_metric_history(result.run_id, "loss/mean")
    assert sorted(point.step for point in points) == list(range(6))  # 6 steps, each once
    assert [r["global_step"] for r in StepHistory(result.run_dir / FILE_NAME).records()] == list(range(6))
