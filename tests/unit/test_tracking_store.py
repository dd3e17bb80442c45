"""Where MLflow runs go: config beats MLFLOW_* environment beats the default; a Ray job may not write its
store into the working directory Ray deletes; the closing summary says where to look."""

from __future__ import annotations

import json

import pytest

from deca_ray.config import TrackingConfig
from deca_ray.errors import RuntimeSetupError
from deca_ray.tracking_context import MAX_TAG_CHARS, counts_tag, git_commit, run_tags
from deca_ray.tracking_store import (
    check_store_outlives_job,
    experiment_name,
    local_store_path,
    ray_job_id,
    tracking_uri,
    where_to_look,
)
from tests.helpers import tiny_config

JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


@pytest.fixture()
def clean_env(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", JOB_ENV, "RAY_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_explicit_config_beats_environment_beats_default(clean_env, tmp_path):
    default = TrackingConfig(output_dir=tmp_path)
    assert tracking_uri(default) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert experiment_name(default) == "deca-ray"
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    clean_env.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    assert tracking_uri(default) == "http://127.0.0.1:5999" and experiment_name(default) == "from-env"
    explicit = TrackingConfig(output_dir=tmp_path, tracking_uri="sqlite:////x/m.db", experiment="mine")
    assert tracking_uri(explicit) == "sqlite:////x/m.db" and experiment_name(explicit) == "mine"


@pytest.mark.parametrize("uri", ["sqlite:///runs/mlflow.db", "mlruns", "file:./mlruns", "{cwd}/runs/mlflow.db",
                                 "sqlite:///{cwd}/mlflow.db"])
def test_a_ray_job_refuses_a_store_inside_its_working_directory(clean_env, tmp_path, uri):
    clean_env.chdir(tmp_path)
    clean_env.setenv(JOB_ENV, json.dumps({"metadata": {"job_submission_id": "raysubmit_abc"}}))
    with pytest.raises(RuntimeSetupError, match="raysubmit_abc.*Set MLFLOW_TRACKING_URI"):
        check_store_outlives_job(uri.format(cwd=tmp_path))


@pytest.mark.parametrize("uri", ["http://mlflow:5000", "sqlite:////shared/mlflow.db", "postgresql://db/mlflow"])
def test_a_ray_job_may_use_a_server_or_shared_storage(clean_env, tmp_path, uri):
    clean_env.chdir(tmp_path)
    clean_env.setenv(JOB_ENV, json.dumps({"metadata": {"job_submission_id": "raysubmit_abc"}}))
    check_store_outlives_job(uri)  # no error
    assert ray_job_id() == "raysubmit_abc"


def test_outside_a_job_a_relative_store_is_fine(clean_env):
    check_store_outlives_job("sqlite:///runs/mlflow.db")
    assert ray_job_id() is None


def test_store_paths_and_where_to_look():
    assert str(local_store_path("sqlite:////abs/m.db")) == "/abs/m.db"
    assert str(local_store_path("sqlite:///rel/m.db")) == "rel/m.db"
    assert local_store_path("https://host/") is None
    assert where_to_look("http://127.0.0.1:5000/", "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert "mlflow ui --backend-store-uri sqlite:///m.db" in where_to_look("sqlite:///m.db", "1", "abc")


def test_run_tags_name_the_code_method_versions_job_clients_and_topology(clean_env):
    tags = run_tags(tiny_config(num_clients=3, topology={"type": "complete"}), job_id="raysubmit_1")
    assert tags["deca_ray.method"] == "deca" and tags["deca_ray.num_clients"] == "3"
    assert tags["deca_ray.topology"] == "complete" and tags["ray.job_id"] == "raysubmit_1"
    assert {"deca_ray.version", "ray.version", "torch.version"} <= set(tags)
    if git_commit() is not None:  # run from a repository
        assert len(tags["mlflow.source.git.commit"]) == 40


def test_the_closing_summary_offers_mlflow_ui_only_for_a_local_store(tmp_path):
    from deca_ray.progress import format_summary
    from deca_ray.runner import RunResult

    def summary_for(uri: str) -> str:
        result = RunResult(tmp_path, {"steps": 1, "wall_time_s": 1.0}, [], uri, "abc")
        return format_summary(result).splitlines()[-1]

    assert summary_for("http://127.0.0.1:5000") == "MLflow: run abc in http://127.0.0.1:5000"
    assert "mlflow ui --backend-store-uri sqlite:////x/m.db" in summary_for("sqlite:////x/m.db")


def test_class_counts_fit_mlflows_tag_limit_and_still_sum_to_the_shard():
    few = {"sport": 3, "tech": 0, "politics": 5}
    assert json.loads(counts_tag(few)) == {"politics": 5, "sport": 3}  # empty labels left out, largest first
    many = {f"fortune-category-{i:02d}": 100 + i for i in range(43)}  # 43 labels: fortunes
    shown = json.loads(counts_tag(many))
    assert len(counts_tag(many)) <= MAX_TAG_CHARS < len(json.dumps(many))
    assert sum(shown.values()) == sum(many.values())
    (other,) = [key for key in shown if key.startswith("(")]
    assert other == f"({43 - len(shown) + 1} other labels)"
    assert shown["fortune-category-42"] == 142  # the largest are the ones kept
