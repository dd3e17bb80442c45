"""Unit tests run in a process without a Ray connection (integration tests, collected first, may leave the
session's shared cluster connected; a connection changes what ``ray_job_id`` and ``deca-ray run`` see)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _unit_tests_hold_no_ray_connection(no_ray_connection):
    return None
