"""On a real Ray cluster: start-up requests that can never work fail at once and leave no trace; SIGINT /
SIGTERM of a running ``deca-ray run`` exit 130 / 143 with a resume command and leave no Ray process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from tests.unit.test_bad_input import TINY, children, run_cli, snapshot

pytestmark = pytest.mark.integration

RAY = ("--set", "runtime.backend=ray", "--set", "runtime.cpus_per_client=0.5")


@pytest.fixture()
def workspace(tokenizer, tmp_path, monkeypatch, no_ray_connection):
    from deca_ray.config import ModelConfig
    from deca_ray.models import packaged_smollm2_dir

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "smollm2-135m-instruct").symlink_to(packaged_smollm2_dir(ModelConfig()))
    (tmp_path / "bad.yaml").write_text(TINY)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


@pytest.mark.parametrize(("args", "fragments", "absent"), [
    (("--set", "runtime.cpus_per_client=64"), ["can never be placed", "128 CPU in total"], "PACK"),
    (("--set", "runtime.gpus_per_client=1"), ["can never be placed", "no GPU", "gpus_per_client=0"], "PACK"),
    (("--set", "runtime.step_timeout_s=0.05"), ["runtime.step_timeout_s=0.05 s"], " 0 s"),
], ids=["more CPUs than the cluster has", "a GPU where there is none", "step timeout too short"])
def test_impossible_ray_start_up_fails_fast_and_leaves_no_trace(args, fragments, absent, workspace, capsys):
    # Prepare
    before, processes = snapshot(workspace), children()
    started = time.monotonic()
    # Execute
    code = run_cli(workspace, "bad.yaml", *RAY, "--set", "runtime.placement_timeout_s=120", *args)
    # Assert: at once (not after the 120 s placement timeout), saying what to change, nothing left
    elapsed = time.monotonic() - started
    error = capsys.readouterr().err
    assert code == 2, error[-2000:]
    assert all(fragment in error for fragment in fragments), error[-2000:]
    assert absent not in error.split("error:")[-1]
    assert elapsed < 100
    assert snapshot(workspace) == before
    assert children() <= processes


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_on_the_ray_backend_stops_cleanly_and_leaves_no_process(number, workspace):
    # Prepare: a Ray run long enough to be stopped mid-training, in its own process group (as a shell job)
    config = workspace / "long.yaml"
    config.write_text(TINY.replace("inner_steps: 1", "inner_steps: 500"))
    log = workspace / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "deca_ray", "run", str(config), "--no-progress", *RAY,
             "--set", f"tracking.output_dir={workspace / 'runs'}", "--set", f"model.cache_dir={workspace / 'cache'}"],
            stderr=stderr, stdout=subprocess.DEVNULL, start_new_session=True,
        )
        tree = _wait_for_steps(process, workspace / "runs", 3)
        # Execute: what Ctrl-C does (the whole foreground process group), or a plain SIGTERM to the driver
        if number == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(number)
        code = process.wait(timeout=180)
    # Assert
    text = log.read_text()
    assert code == 128 + number, text[-3000:]
    assert "resume with: deca-ray run --resume" in text and "SIGTERM received" not in text, text[-3000:]
    time.sleep(2)
    assert [p.pid for p in tree if _running(p)] == []


def test_a_stopped_ray_run_resumes_to_an_uninterrupted_runs_parameters_with_every_step_once(workspace):
    # Prepare: the same short Ray run twice, one of them stopped by SIGTERM after 3 steps
    steps = 16  # 2 blocks × 8 inner steps
    config = workspace / "short.yaml"
    config.write_text(TINY.replace("inner_steps: 1", "inner_steps: 8").replace("name: bad", "name: short"))
    places = ["--set", f"model.cache_dir={workspace / 'cache'}", *RAY]
    whole = subprocess.run([sys.executable, "-m", "deca_ray", "run", str(config), "--no-progress", *places,
                            "--set", f"tracking.output_dir={workspace / 'whole'}"], capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    log = workspace / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "deca_ray", "run", str(config), "--no-progress", *places,
                                    "--set", f"tracking.output_dir={workspace / 'runs'}"],
                                   stderr=stderr, stdout=subprocess.DEVNULL, start_new_session=True)
        _wait_for_steps(process, workspace / "runs", 3, name="short")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=180) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    [run_dir] = (workspace / "runs").glob("short-*")
    # Execute: the resume command the stopped run printed
    resume = log.read_text().split("resume with: deca-ray ")[1].splitlines()[0].split()
    resumed = subprocess.run([sys.executable, "-m", "deca_ray", *resume, "--no-progress"], capture_output=True,
                             text=True, timeout=600, cwd=workspace / "cwd")
    # Assert
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = [json.loads(line)["global_step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert history == list(range(steps))
    [whole_dir] = (workspace / "whole").glob("short-*")
    for client in range(2):
        expected, actual = (_last_checkpoint(directory, client, steps) for directory in (whole_dir, run_dir))
        assert expected.keys() == actual.keys()
        assert all(torch.equal(expected[name], actual[name]) for name in expected), client


def _last_checkpoint(run_dir: Path, client: int, steps: int) -> dict:
    """The client's trained tensors, moments and master at the end (not the process's global torch RNG)."""
    final = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    assert final.name == f"step-{steps:08d}"
    state = load_file(str(final / f"client-{client:04d}.safetensors"))
    return {name: value for name, value in state.items() if not name.startswith("rng/")}


def test_after_a_sigkill_of_the_driver_no_ray_process_is_left(workspace):
    # Prepare: a running Ray run, and its process tree (the embedded cluster, its workers, the watchdog)
    config = workspace / "long.yaml"
    config.write_text(TINY.replace("inner_steps: 1", "inner_steps: 500"))
    process = subprocess.Popen(
        [sys.executable, "-m", "deca_ray", "run", str(config), "--no-progress", *RAY,
         "--set", f"tracking.output_dir={workspace / 'runs'}", "--set", f"model.cache_dir={workspace / 'cache'}"],
        stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
    )
    tree = _wait_for_steps(process, workspace / "runs", 3)
    # Execute: a kill nothing can catch
    process.kill()
    process.wait(timeout=30)
    # Assert: within seconds (Ray's own agents would linger about a minute), nothing of it runs
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_running(p) for p in tree):
        time.sleep(0.5)
    assert [p.pid for p in tree if _running(p)] == []
    assert _mlflow_statuses(workspace / "runs") == ["KILLED"]  # marked by the run's watchdog


def _mlflow_statuses(runs: Path) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    deadline = time.monotonic() + 20
    while True:
        statuses = [run.info.status for run in client.search_runs(
            [client.get_experiment_by_name("deca-ray").experiment_id])]
        if "RUNNING" not in statuses or time.monotonic() > deadline:
            return statuses
        time.sleep(0.5)


def _wait_for_steps(process: subprocess.Popen, runs: Path, steps: int, name: str = "bad") -> list[psutil.Process]:
    """Until the run's metrics.jsonl holds ``steps`` steps; returns the process tree at that moment."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be stopped"
        history = list(runs.glob(f"{name}-*/metrics.jsonl"))
        if history and len(history[0].read_text().splitlines()) >= steps:
            return psutil.Process(process.pid).children(recursive=True)
        time.sleep(0.1)
    raise AssertionError("the run did not reach its first steps in time")


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
