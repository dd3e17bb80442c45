"""Ctrl-C / SIGTERM a real ``deca-ray run`` mid-training, resume it, and get an uninterrupted run's result.

Each run is a subprocess of the CLI (tiny model, local backend, MLflow on). The stopped run must
exit 130 / 143 naming its checkpoint and the exact resume command; the resumed run's
``metrics.jsonl`` and MLflow history must hold every step exactly once, and its final
parameters must equal those of a run that was never interrupted.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

CONFIG = """
name: stop
num_clients: 2
model: {name: tiny-llama, tiny: {num_layers: 2, hidden_size: 32, num_heads: 4, num_kv_heads: 2, intermediate_size: 64}}
data: {max_train_examples: 40, max_tokens: 48, body_words: 10, batch_size: 2, test_size: 4}
partition: {type: iid}
algorithm: {inner_steps: 15, lr: 1.0e-3, blocks: {layers_per_block: 1}}
runtime: {backend: local}
evaluation: {before_training: false, after_training: false}
tracking: {save_model: false, system_metrics: false}
"""
TOTAL_STEPS = 30  # 2 blocks × 15 inner steps
SIGNAL_AFTER_STEPS = 3


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "deca_ray", *args]


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(*args), cwd=folder, capture_output=True, text=True, timeout=600)


def _stopped_run(folder: Path, config: Path, number: int) -> tuple[int, str]:
    """Start a run, send ``number`` once its metrics.jsonl holds a few steps; (exit status, stderr)."""
    log = folder / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(_command("run", str(config), "--no-progress"), cwd=folder,
                                   stderr=stderr, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            history = list((folder / "runs").glob("stop-*/metrics.jsonl"))
            if history and len(history[0].read_text().splitlines()) >= SIGNAL_AFTER_STEPS:
                process.send_signal(number)
                break
            time.sleep(0.05)
        code = process.wait(timeout=300)
    return code, log.read_text()


def _run_dir(folder: Path) -> Path:
    [run_dir] = (folder / "runs").glob("stop-*")
    return run_dir


def _final_parameters(run_dir: Path) -> dict[int, dict]:
    """Each client's trained parameters, moments and fp32 master in the last checkpoint.

    (Not ``rng/torch``: the process's global torch RNG, which this training never draws from, starts
    from a different state in every process.)
    """
    final = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    assert final.name == f"step-{TOTAL_STEPS:08d}"
    tensors = {i: load_file(str(final / f"client-{i:04d}.safetensors")) for i in range(2)}
    return {i: {name: value for name, value in state.items() if not name.startswith("rng/")}
            for i, state in tensors.items()}


def _mlflow_steps(folder: Path, run_dir: Path) -> list[int]:
    from mlflow.tracking import MlflowClient

    run_id = json.loads((run_dir / "summary.json").read_text())["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    return sorted(metric.step for metric in client.get_metric_history(run_id, "loss/mean"))


def _mlflow_status(folder: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("deca-ray").experiment_id])
    return run.info.status


@pytest.fixture(scope="module")
def uninterrupted(tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    (folder / "stop.yaml").write_text(CONFIG)
    done = _run(folder, "run", "stop.yaml", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    return _run_dir(folder)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopped_then_resumed_run_equals_an_uninterrupted_one(number, uninterrupted, tmp_path):
    # Prepare
    (tmp_path / "stop.yaml").write_text(CONFIG)
    # Execute: stop it mid-run, then run the resume command it printed
    code, stderr = _stopped_run(tmp_path, tmp_path / "stop.yaml", number)
    assert code == 128 + number, stderr[-3000:]
    run_dir = _run_dir(tmp_path)
    assert f"resume with: deca-ray run --resume {shlex.quote(str(Path('runs') / run_dir.name))}" in stderr
    assert "checkpoint: " in stderr and "Traceback" not in stderr and "SIGTERM received" not in stderr
    assert _mlflow_status(tmp_path) == "KILLED"
    resume_args = shlex.split(stderr.split("resume with: deca-ray ")[1].splitlines()[0])
    resumed = _run(tmp_path, *resume_args, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Assert: every step once in the history file and in MLflow, and the same final parameters
    steps = [json.loads(line)["global_step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(TOTAL_STEPS))
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == TOTAL_STEPS
    assert _mlflow_steps(tmp_path, run_dir) == list(range(TOTAL_STEPS))
    expected, actual = _final_parameters(uninterrupted), _final_parameters(run_dir)
    for client in expected:
        assert expected[client].keys() == actual[client].keys()
        for name, value in expected[client].items():
            assert (value == actual[client][name]).all(), (client, name)


def test_a_sigkilled_driver_leaves_its_mlflow_run_killed_not_running(tmp_path):
    # Prepare
    (tmp_path / "stop.yaml").write_text(CONFIG)
    # Execute: SIGKILL gives the driver no chance to end its run; its watchdog does
    code, stderr = _stopped_run(tmp_path, tmp_path / "stop.yaml", signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr[-3000:]
    deadline = time.monotonic() + 30
    while _mlflow_status(tmp_path) == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    # Assert
    assert _mlflow_status(tmp_path) == "KILLED"
