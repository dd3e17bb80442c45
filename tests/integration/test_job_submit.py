"""``ray job submit`` against a ``ray start --head`` cluster on 127.0.0.1: the job succeeds, its
``ray_deca_*`` metrics appear on the node's Prometheus endpoint while it runs, and its MLflow
run holds the step metrics (one run per job, per-client metric names)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
CONFIG = """
name: submitted
num_clients: 2
model: {name: tiny-llama, tiny: {num_layers: 2, hidden_size: 32, num_heads: 4, num_kv_heads: 2, intermediate_size: 64}}
data: {max_train_examples: 40, test_size: 10, max_tokens: 48, body_words: 20, batch_size: 2}
algorithm: {rounds: 3, inner_steps: 8, lr: 1.0e-3, blocks: {layers_per_block: 1}}
runtime: {backend: ray, cpus_per_client: 0.25}
evaluation: {per_client: false}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def head_node():
    """A real head node on loopback with the dashboard (job API), stopped afterwards.

    ``ray start --block`` keeps the head in our process group, so the test stops exactly this
    cluster; ``ray stop`` would kill every Ray process on the machine.
    """
    # Ray's socket paths must stay under the 107-byte Unix limit: pytest's tmp_path is too deep.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_metrics_report_interval_ms": "1000",  # export every second, not every 10 s
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    dashboard_port, gcs_port, metrics_port = _free_port(), _free_port(), _free_port()
    # Another local cluster (the other integration tests' session cluster) holds Ray's default
    # agent ports; without its own, this head's job agent never starts ("No available agent").
    agent_ports = [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
                   f"--runtime-env-agent-port={_free_port()}"]
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--num-cpus=2",
         "--object-store-memory=300000000", "--include-dashboard=true", f"--temp-dir={temp_dir}",
         f"--metrics-export-port={metrics_port}", *agent_ports],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        _wait_for_dashboard(address, head)
        yield address, env, f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block stops the cluster it started on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_dashboard(address: str, head: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {head.returncode}")
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the Ray dashboard at {address} did not answer within {timeout_s} s")


def _deca_series(metrics_url: str) -> set[str]:
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return set()
    return set(re.findall(r"^(ray_deca_[a-z_]+?)(?:_bucket|_sum|_count)?[{ ]", text, flags=re.MULTILINE))


def test_job_submit_runs_to_success_and_exports_metrics_and_logs_to_mlflow(head_node, tmp_path):
    # Prepare: a working dir holding a tiny config; results go to an absolute path we can read.
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, env, metrics_url = head_node
    workdir = tmp_path / "job"
    workdir.mkdir()
    (workdir / "tiny.yaml").write_text(CONFIG)
    output = tmp_path / "runs"
    command = [str(BIN / "ray"), "job", "submit", "--no-wait", f"--address={address}", f"--working-dir={workdir}",
               "--", sys.executable, "-m", "deca_ray", "run", "tiny.yaml", "--no-progress",
               "--set", f"tracking.output_dir={output}"]
    # Execute: submit (retrying while the job agent starts), then scrape Prometheus while it runs
    agent_deadline = time.monotonic() + 300  # the job agent starts some seconds after the dashboard
    while True:
        submitted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        if "No available agent" not in submitted.stderr + submitted.stdout or time.monotonic() > agent_deadline:
            break
        time.sleep(2)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    job_id = re.search(r"raysubmit_\w+", submitted.stdout).group(0)
    jobs = JobSubmissionClient(address)
    seen: set[str] = set()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not jobs.get_job_status(job_id).is_terminal():
        seen |= _deca_series(metrics_url)
        time.sleep(1)
    # Assert: the job succeeded, its live metrics were exported, MLflow holds the run
    assert jobs.get_job_status(job_id) == JobStatus.SUCCEEDED, jobs.get_job_logs(job_id)[-3000:]
    assert {"ray_deca_inner_step", "ray_deca_client_loss", "ray_deca_step_seconds"} <= seen, seen
    import mlflow

    store = mlflow.MlflowClient(f"sqlite:///{output / 'mlflow.db'}")
    runs = store.search_runs([store.get_experiment_by_name("deca-ray").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # one run per job
    metrics = runs[0].data.metrics
    assert {"loss/mean", "bytes_sent/total", "eval/accuracy", "eval_before/accuracy"} <= set(metrics)
    assert {"client_0/loss", "client_1/loss"} <= set(metrics)  # per-client metric names, not nested runs
    assert runs[0].data.tags["ray.job_id"] == job_id  # the submission id, as `ray job logs` takes it
    assert runs[0].data.params["num_clients"] == "2"
    history = store.get_metric_history(runs[0].info.run_id, "loss/mean")
    assert [point.step for point in history] == list(range(3 * 2 * 8))  # 3 rounds × 2 blocks × 8 steps
