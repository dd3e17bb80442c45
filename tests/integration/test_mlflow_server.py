"""A run against a real ``mlflow server`` (sqlite backend, proxied artifacts), read back through MLflow's
REST API and client where the UI reads it: the experiment named by MLFLOW_EXPERIMENT_NAME with its kind
tag, run tags, metric names, system metrics, the logged model and the clients' dataset inputs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from deca_ray.config import config_from_dict
from deca_ray.runner import run_experiment
from tests.integration.test_job_submit import head_node  # noqa: F401  (the project's own head-node fixture)

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
EXPERIMENT = "product-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on loopback, in its own process group, stopped by its PID afterwards."""
    root = tmp_path_factory.mktemp("mlflow-server")
    url = f"http://127.0.0.1:{_free_port()}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with (root / "server.log").open("w") as log:
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_for(url, server, root / "server.log")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _wait_for(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"mlflow server at {url} did not answer within {timeout_s} s")


def _config(output_dir: Path, **tracking) -> dict:
    return {
        "name": "served", "num_clients": 2,
        "model": {"name": "tiny-llama", "tiny": {"num_layers": 2, "hidden_size": 32, "num_heads": 4,
                                                  "num_kv_heads": 2, "intermediate_size": 64}},
        "data": {"max_train_examples": 20, "test_size": 8, "max_tokens": 48, "body_words": 15, "batch_size": 2},
        "algorithm": {"inner_steps": 2, "lr": 1e-3, "blocks": {"layers_per_block": 1}},
        "runtime": {"backend": "local"},
        "evaluation": {"per_client": False},
        "tracking": {"output_dir": str(output_dir), **tracking},
    }


@pytest.fixture(scope="module")
def served_run(mlflow_server, tmp_path_factory, tokenizer):
    """One finished run whose store and experiment come from the environment only."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        env.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        # MLflow logs system metrics only after a full sampling interval of a RUNNING run: this tiny run can
        # end within a second on an idle machine (CI did), so sample every 0.1 s
        env.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
        env.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
        result = run_experiment(config_from_dict(_config(tmp_path_factory.mktemp("runs"))))
    return mlflow_server, result


def _rest(url: str, endpoint: str, **query: str) -> dict:
    address = f"{url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(address, timeout=30) as reply:
        return json.loads(reply.read())


def _pairs(items: list[dict]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in items}


def test_the_run_lands_in_the_environments_experiment_tagged_for_model_training(served_run):
    url, result = served_run
    experiment = _rest(url, "experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]
    run = _rest(url, "runs/get", run_id=result.run_id)["run"]
    assert _pairs(experiment["tags"])["mlflow.experimentKind"] == "custom_model_development"
    assert run["info"]["experiment_id"] == experiment["experiment_id"] and run["info"]["status"] == "FINISHED"
    assert result.tracking_uri == url


def test_run_tags_name_code_method_versions_clients_and_topology(served_run):
    url, result = served_run
    tags = _pairs(_rest(url, "runs/get", run_id=result.run_id)["run"]["data"]["tags"])
    assert tags["deca_ray.method"] == "deca" and tags["deca_ray.num_clients"] == "2"
    assert tags["deca_ray.topology"] == "ring"
    assert {"deca_ray.version", "ray.version", "torch.version", "mlflow.source.git.commit"} <= set(tags)


def test_metric_names_say_what_and_which_client(served_run):
    from mlflow import MlflowClient

    url, result = served_run
    client = MlflowClient(url)
    metrics = set(client.get_run(result.run_id).data.metrics)
    assert {"eval_before/accuracy", "eval/accuracy", "eval/macro_f1", "loss/mean", "tensor_memory/peak_bytes",
            "throughput/tokens_per_s"} <= metrics
    for name in ("loss", "bytes_sent_total", "tokens_per_s", "peak_tensor_bytes"):
        assert {f"client_0/{name}", f"client_1/{name}"} <= metrics
    assert not [name for name in metrics if name.startswith(("avg/", "final/", "client_loss/"))]
    assert [name for name in metrics if name.startswith("system/")]  # MLflow system metrics
    sent = [point.value for point in client.get_metric_history(result.run_id, "client_0/bytes_sent_total")]
    assert sent == sorted(sent) and sent[-1] > 0  # cumulative


def test_the_model_is_a_run_artifact_that_transformers_loads(served_run, tmp_path):
    import mlflow
    from transformers import AutoModelForCausalLM

    url, result = served_run
    listed = {item["path"] for item in _rest(url, "artifacts/list", run_id=result.run_id, path="model")["files"]}
    assert {"model/config.json", "model/model.safetensors", "model/tokenizer.json"} <= listed
    local = mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="model", dst_path=str(tmp_path), tracking_uri=url
    )
    assert type(AutoModelForCausalLM.from_pretrained(local)).__name__ == "LlamaForCausalLM"


def test_each_clients_shard_is_a_dataset_input_with_its_class_counts(served_run):
    url, result = served_run
    inputs = _rest(url, "runs/get", run_id=result.run_id)["run"]["inputs"]["dataset_inputs"]
    by_name = {entry["dataset"]["name"]: _pairs(entry["tags"]) for entry in inputs}
    assert set(by_name) == {"client_0", "client_1", "held_out"}
    assert by_name["client_0"]["mlflow.data.context"] == "training"
    assert by_name["held_out"]["mlflow.data.context"] == "evaluation"
    counts = [sum(json.loads(by_name[f"client_{i}"]["class_counts"]).values()) for i in range(2)]
    assert sum(counts) == 20 and counts == [int(by_name[f"client_{i}"]["examples"]) for i in range(2)]


def test_an_interrupted_run_ends_killed(mlflow_server, tmp_path, tokenizer):
    from mlflow import MlflowClient

    def interrupt(metrics):
        raise KeyboardInterrupt  # what Ctrl-C, or SIGTERM inside the run, raises

    config = config_from_dict(_config(tmp_path, tracking_uri=mlflow_server, experiment="killed", save_model=False))
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, on_step=interrupt)
    client = MlflowClient(mlflow_server)
    [run] = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    assert run.info.status == "KILLED"


JOB_CONFIG = """
name: submitted-to-mlflow
num_clients: 2
model: {name: tiny-llama, tiny: {num_layers: 2, hidden_size: 32, num_heads: 4, num_kv_heads: 2, intermediate_size: 64}}
data: {max_train_examples: 20, test_size: 8, max_tokens: 48, body_words: 15, batch_size: 2}
algorithm: {inner_steps: 2, lr: 1.0e-3, blocks: {layers_per_block: 1}}
runtime: {backend: local}
evaluation: {per_client: false}
"""


def test_a_ray_job_logs_to_the_server_named_by_mlflow_tracking_uri(mlflow_server, head_node, tmp_path):  # noqa: F811
    # Prepare: a job whose only tracking setting is the environment its runtime_env gives it
    from mlflow import MlflowClient
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, env, _ = head_node
    workdir = tmp_path / "job"
    workdir.mkdir()
    (workdir / "tiny.yaml").write_text(JOB_CONFIG)
    runtime_env = {"env_vars": {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_EXPERIMENT_NAME": "from-a-job",
                                "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}}
    jobs = JobSubmissionClient(address)
    # Execute
    deadline = time.monotonic() + 300  # the job agent starts some seconds after the dashboard
    while True:
        try:
            job_id = jobs.submit_job(entrypoint=f"{sys.executable} -m deca_ray run tiny.yaml --no-progress",
                                     runtime_env={"working_dir": str(workdir), **runtime_env})
            break
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(2)
    while not jobs.get_job_status(job_id).is_terminal() and time.monotonic() < deadline + 300:
        time.sleep(1)
    # Assert: one finished run in the environment's experiment, tagged with the submission id
    assert jobs.get_job_status(job_id) == JobStatus.SUCCEEDED, jobs.get_job_logs(job_id)[-3000:]
    client = MlflowClient(mlflow_server)
    [run] = client.search_runs([client.get_experiment_by_name("from-a-job").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["ray.job_id"] == job_id
    assert "model/config.json" in {item.path for item in client.list_artifacts(run.info.run_id, "model")}

