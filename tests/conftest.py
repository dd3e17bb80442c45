"""Shared fixtures: offline hub, the packaged tokenizer, tiny models, one local Ray cluster per session."""

from __future__ import annotations

import os

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
