"""Shared fixtures: offline hub, the packaged tokenizer, tiny models, one local Ray cluster per session."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest

from deca_ray.config import ModelConfig


@pytest.fixture(scope="session")
def tokenizer():
    """The packaged SmolLM2 tokenizer (converted once into the user cache, ~20 s the first time)."""
    from deca_ray.models import load_tokenizer

    return load_tokenizer(ModelConfig())


@pytest.fixture(scope="session")
def _ray_session():
    """Shuts the session's local Ray cluster down at the end (``ray_cluster`` starts it)."""
    import ray

    yield ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture()
def ray_cluster(_ray_session):
    """A real local Ray cluster shared by the integration tests of one session (tests/integration, tests/benchmarks).

    Started by the first test that asks for it, and again after a multi-node test (which connects this
    process to a cluster of its own and disconnects it at the end).
    """
    ray = _ray_session
    if not ray.is_initialized():
        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024 * 1024,
                 log_to_driver=False)
    return ray


@pytest.fixture(autouse=True)
def _mlflow_state_of_the_process():
    """Every test ends with the MLflow settings it started with.

    ``mlflow.set_tracking_uri`` keeps the URI in a module global *and* exports ``MLFLOW_TRACKING_URI``; a test
    that queried its own store that way once made every later run of the session log into that store.
    """
    before = {name: value for name, value in os.environ.items() if name.startswith("MLFLOW_")}
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(before.get("MLFLOW_TRACKING_URI"))  # None: back to MLflow's default
    for name in [name for name in os.environ if name.startswith("MLFLOW_")]:
        if name not in before:
            del os.environ[name]
    os.environ.update(before)


@pytest.fixture()
def no_ray_connection(_ray_session):
    """This process holds no Ray connection, as a user's fresh ``deca-ray`` process does: the session's
    shared cluster (if an integration test started it) is stopped; ``ray_cluster`` starts it again."""
    ray = _ray_session
    if ray.is_initialized():
        ray.shutdown()
    return ray
