"""SIGINT / SIGTERM handling (deca_ray.stopping), the driver's safe point, and the per-step history file."""

from __future__ import annotations

import json
import os
import signal

import pytest

from deca_ray import stopping
from deca_ray.algorithm.topology import build_topology
from deca_ray.errors import RunInterrupted
from deca_ray.history import StepHistory
from deca_ray.runtime.checkpointer import Checkpointer
from deca_ray.runtime.driver import Driver
from deca_ray.runtime.group import LocalClientGroup
from deca_ray.runtime.topology_service import TopologyService
from deca_ray.schedule import schedule
from tests.helpers import tiny_client, tiny_config


def _raise_signal(number: int) -> None:
    os.kill(os.getpid(), number)


def test_first_signal_waits_for_the_safe_point_and_a_second_one_stops_at_once():
    with stopping.stop_signals(), stopping.deferred():
        _raise_signal(signal.SIGTERM)
        assert stopping.requested() == signal.SIGTERM  # recorded, nothing raised
        with pytest.raises(RunInterrupted) as stop:
            _raise_signal(signal.SIGINT)
    assert stop.value.exit_code == 128 + signal.SIGINT


def test_outside_the_training_loop_a_signal_stops_at_once_and_handlers_are_restored():
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted) as stop, stopping.stop_signals():
        _raise_signal(signal.SIGTERM)
    assert stop.value.exit_code == 143 and stop.value.global_step is None
    assert signal.getsignal(signal.SIGTERM) is previous
    assert stopping.requested() is None


def test_stop_request_ends_the_run_after_the_current_step_with_a_checkpoint_there(tmp_path):
    # Prepare: 2 blocks × 3 inner steps; a stop is requested while step 1 (mid-block) runs
    config = tiny_config(num_clients=2)
    group = LocalClientGroup([tiny_client(config, i) for i in range(2)])
    checkpointer = Checkpointer(config.checkpoint, tmp_path, config.fingerprint(), config.algorithm.inner_steps)
    done: list[int] = []
    driver = Driver(group, TopologyService(build_topology("ring", 2)), list(schedule(2, config.algorithm, 0)),
                    config.runtime, checkpointer, stop_requested=lambda: signal.SIGTERM if done[-1:] == [1] else None)
    # Execute
    with pytest.raises(RunInterrupted) as stop:
        driver.run(lambda metrics: done.append(metrics.position.global_step))
    # Assert: it stopped after step 1, with a checkpoint of step 1 that a resume continues from
    assert done == [0, 1]
    assert stop.value.global_step == 1 and stop.value.exit_code == 143
    assert stop.value.checkpoint.endswith("step-00000002")
    assert checkpointer.load_latest().global_step == 1


def test_message_names_the_checkpoint_and_the_exact_resume_command():
    stop = RunInterrupted(signal.SIGINT, 11, "runs/a b/checkpoints/step-00000012", "runs/a b")
    assert str(stop) == ("stopped by SIGINT after inner step 12; checkpoint: runs/a b/checkpoints/step-00000012\n"
                         "resume with: deca-ray run --resume 'runs/a b'")


def _record(step: int) -> dict:
    return {"global_step": step, "mean_loss": float(step)}


def test_history_appends_each_step_and_a_step_run_again_rewinds_the_file(tmp_path):
    history = StepHistory(tmp_path / "metrics.jsonl")
    for step in [0, 1, 2, 3, 2, 3, 4]:  # a rollback to the checkpoint after step 1
        history.append(_record(step))
    assert [r["global_step"] for r in history.records()] == [0, 1, 2, 3, 4]
    resumed = StepHistory(tmp_path / "metrics.jsonl")  # a new process resuming after step 2
    resumed.append(_record(3))
    assert [r["global_step"] for r in resumed.records()] == [0, 1, 2, 3]


def test_history_drops_a_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n" + '{"global_step": 1, "mean_lo')
    history = StepHistory(path)
    history.append(_record(1))
    assert [r["global_step"] for r in history.records()] == [0, 1]
    assert path.read_text().count("\n") == 2
