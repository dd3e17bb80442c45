"""``ray job submit`` against a ``ray start --head`` cluster on 127.0.0.1, then the MLflow run."""

from __future__ import annotations

import os
import re
import signal
import shutil
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
algorithm: {inner_steps: 2, lr: 1.0e-3, blocks: {layers_per_block: 1}}
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
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    dashboard_port, gcs_port = _free_port(), _free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--num-cpus=2",
         "--object-store-memory=300000000", "--include-dashboard=true", f"--temp-dir={temp_dir}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        _wait_for_dashboard(address, head)
        yield address, env
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


def test_job_submit_runs_to_success_and_logs_to_mlflow(head_node, tmp_path):
    # Prepare: a working dir holding a tiny config; results go to an absolute path we can read.
    address, env = head_node
    workdir = tmp_path / "job"
    workdir.mkdir()
    (workdir / "tiny.yaml").write_text(CONFIG)
    output = tmp_path / "runs"
    # Execute: ray job submit waits for the job and exits non-zero unless it SUCCEEDED
    command = [str(BIN / "ray"), "job", "submit", f"--address={address}", f"--working-dir={workdir}", "--",
               sys.executable, "-m", "deca_ray", "run", "tiny.yaml", "--no-progress",
               "--set", f"tracking.output_dir={output}"]
    for _ in range(30):  # the job agent comes up a few seconds after the dashboard answers
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if "No available agent" not in result.stderr + result.stdout:
            break
        time.sleep(2)
    # Assert
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    from ray.job_submission import JobStatus, JobSubmissionClient

    job_id = re.search(r"raysubmit_\w+", result.stdout).group(0)
    assert JobSubmissionClient(address).get_job_status(job_id) == JobStatus.SUCCEEDED
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{output / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["deca-ray"], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    metrics = runs[0].data.metrics
    assert {"loss/mean", "bytes_sent/total", "final/avg/accuracy", "avg/accuracy"} <= set(metrics)
    assert runs[0].data.params["num_clients"] == "2"
    history = mlflow.MlflowClient().get_metric_history(runs[0].info.run_id, "loss/mean")
    assert [point.step for point in history] == [0, 1, 2, 3]  # 2 blocks × 2 inner steps, one point each
    shutil.rmtree(output / "mlartifacts", ignore_errors=True)
