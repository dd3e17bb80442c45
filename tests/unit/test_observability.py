"""What a user watching a run sees: actor names and reprs, gauges kept exported, progress lines, numbering.

No Ray cluster: the Ray metrics module is a fake, the client actor a plain object.
"""

from __future__ import annotations

import logging
import time

import pytest
import torch

from deca_ray.metrics import NUM_CLIENTS, ROUND, SPECTRAL_GAP, RayMetrics, refresh_interval_s
from deca_ray.progress import ProgressReporter
from deca_ray.runtime.naming import client_actor_name, client_label, run_namespace
from deca_ray.schedule import Position, StepMetrics
from deca_ray.tracking import step_metrics
from tests.helpers import PAD, TINY_VOCAB, synthetic_examples, tiny_config


class _Gauge:
    def __init__(self, name, **kwargs):
        self.name, self.calls, self.default_tags = name, [], {}

    def set_default_tags(self, tags):
        self.default_tags = dict(tags)

    def set(self, value, tags=None):
        self.calls.append((value, dict(tags or {})))

    inc = observe = set


class _Module:
    def __init__(self):
        self.created: dict[str, _Gauge] = {}

    def _make(self, name, **kwargs):
        self.created[name] = _Gauge(name, **kwargs)
        return self.created[name]

    Gauge = Counter = Histogram = _make


def _step(global_step: int, round_index: int = 0, inner_step: int = 0, clients=(0, 1)) -> StepMetrics:
    clients = list(clients)
    return StepMetrics(Position(round_index, 2, inner_step, global_step), clients=clients,
                       client_losses=[1.0] * len(clients), bytes_sent=[8] * len(clients), step_time_s=0.1,
                       client_compute_s=[0.05] * len(clients), client_tokens=[10.0] * len(clients))


# ---------------------------------------------------------------- names on the Ray dashboard


def test_actor_names_say_which_clients_and_runs_do_not_collide():
    assert client_actor_name([3]) == "deca-client-3"
    assert client_actor_name([1, 0]) == "deca-clients-0-1"  # co-hosted virtual clients: their range
    assert client_actor_name([0, 2]) == "deca-clients-0,2"
    assert client_label([4, 5, 6]) == "4-6"
    assert run_namespace("quickstart-20260101") == "deca-quickstart-20260101"
    assert run_namespace() != run_namespace()  # no run name: a fresh namespace each time
    with pytest.raises(ValueError):
        client_actor_name([])


def test_client_actor_repr_names_its_clients_and_active_block():
    from deca_ray.client import ClientSpec
    from deca_ray.runtime.actor import ClientActor

    config = tiny_config(num_clients=2, runtime={"clients_per_actor": 2})
    specs = [ClientSpec.from_config(config, i, PAD, TINY_VOCAB) for i in range(2)]
    actor = ClientActor(specs, torch_threads=torch.get_num_threads())
    assert repr(actor) == "ClientActor(clients=0-1, block=-)"
    actor.setup(synthetic_examples(4, seed=0), synthetic_examples(4, seed=1))
    actor.begin_block(0, 1)
    actor.begin_block(1, 1)
    assert repr(actor) == "ClientActor(clients=0-1, block=1)"


# ---------------------------------------------------------------- Ray metrics


def test_steps_export_rounds_and_inner_steps_counted_from_one():
    module = _Module()
    recorder = RayMetrics("run-1", metrics_module=module)
    recorder.record(_step(0, round_index=0, inner_step=0))
    assert module.created[ROUND].calls == [(1.0, {})]
    assert module.created["deca_inner_step"].calls == [(1.0, {})]
    assert module.created["deca_block"].calls == [(2.0, {})]  # blocks keep their 0-based index
    assert step_metrics(_step(0))["schedule/round"] == 1.0  # MLflow counts the same way


def test_run_constants_are_set_again_with_every_step():
    module = _Module()
    recorder = RayMetrics("run-1", metrics_module=module)
    recorder.record_run(spectral_gap=0.25, num_clients=2)
    recorder.record(_step(0))
    recorder.record(_step(1, inner_step=1))
    assert module.created[SPECTRAL_GAP].calls == [(0.25, {})] * 3
    assert module.created[NUM_CLIENTS].calls == [(2.0, {})] * 3


def test_keep_alive_re_sets_every_gauge_until_the_block_ends():
    module = _Module()
    with RayMetrics("run-1", metrics_module=module, refresh_s=0.01) as recorder:
        recorder.record_run(spectral_gap=0.5, num_clients=2)
        recorder.record(_step(0))
        deadline = time.monotonic() + 5
        while len(module.created[SPECTRAL_GAP].calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    losses = module.created["deca_client_loss"].calls
    assert len(module.created[SPECTRAL_GAP].calls) >= 4
    assert {tags["client"] for _, tags in losses} == {"0", "1"} and len(losses) > 2  # per-client series too
    settled = len(module.created[SPECTRAL_GAP].calls)
    time.sleep(0.05)
    assert len(module.created[SPECTRAL_GAP].calls) == settled  # stopped with the block


def test_keep_alive_period_is_half_of_rays_report_interval(monkeypatch):
    monkeypatch.delenv("RAY_metrics_report_interval_ms", raising=False)
    assert refresh_interval_s() == 5.0  # Ray's default: reports every 10 s
    monkeypatch.setenv("RAY_metrics_report_interval_ms", "1000")
    assert refresh_interval_s() == 0.5
    assert RayMetrics("run-1", metrics_module=_Module())._refresh_s == 0.5


def test_a_drop_updates_the_client_count_and_asks_for_the_new_spectral_gap():
    module = _Module()
    gaps = iter([0.1])
    recorder = RayMetrics("run-1", metrics_module=module, spectral_gap=lambda: next(gaps))
    recorder.record_run(spectral_gap=0.3, num_clients=3)
    recorder.record(_step(0, clients=(0, 1, 2)))
    recorder.record(_step(1, clients=(0, 2)))  # client 1 dropped
    assert module.created[NUM_CLIENTS].calls[-1] == (2.0, {})
    assert module.created[SPECTRAL_GAP].calls[-1] == (0.1, {})


# ---------------------------------------------------------------- progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_progress_is_a_line_every_few_seconds(caplog):
    config = tiny_config(algorithm={"rounds": 2, "inner_steps": 3})
    clock = _Clock()
    progress = ProgressReporter(config, interactive=False, every_s=10.0, clock=clock)
    progress.start(total_steps=12)
    with caplog.at_level(logging.INFO, logger="deca_ray.progress"):
        for step in range(12):
            clock.now = step * 2.0  # 2 s per step: a line every 5 steps, plus the first and the last
            progress.update(_step(step, round_index=step // 6, inner_step=step % 3))
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(":")[0] for line in lines] == ["step 1/12", "step 6/12", "step 11/12", "step 12/12"]
    assert "round 1/2 block 2 step 1/3" in lines[0]
    assert "round 2/2 block 2 step 3/3" in lines[-1] and "(2.00 s/step)" in lines[1]


def test_on_a_terminal_progress_is_a_bar_and_no_lines(caplog):
    progress = ProgressReporter(tiny_config(), interactive=True)
    with progress, caplog.at_level(logging.INFO, logger="deca_ray.progress"):
        progress.start(total_steps=2)
        progress.update(_step(0))
        assert progress._bar is not None and progress._bar.n == 1
    assert caplog.records == []
    assert not ProgressReporter(tiny_config(), enabled=False, interactive=True).bar  # --no-progress
