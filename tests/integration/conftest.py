"""A real local Ray cluster shared by the integration tests of one session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024 * 1024,
             log_to_driver=False)
    yield ray
    ray.shutdown()
