"""Reaching a Ray cluster is bounded by runtime.connect_timeout_s (no cluster is started here)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from deca_ray.config import RuntimeConfig
from deca_ray.errors import RuntimeSetupError
from deca_ray.runtime.reach import gcs_target, init_within

SILENT_SERVER = """
import os, socket, sys, time
os.environ["RAY_AUTH_MODE"] = "disabled"
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen()  # accepts, never speaks Ray
from deca_ray.config import RuntimeConfig
from deca_ray.errors import RuntimeSetupError
from deca_ray.runtime.cluster import connect
started = time.monotonic()
try:
    connect(RuntimeConfig(address=f"127.0.0.1:{server.getsockname()[1]}", connect_timeout_s=3))
except RuntimeSetupError as error:
    print(f"{time.monotonic() - started:.1f} {error}")
    sys.exit(0)
sys.exit(1)
"""


def test_an_address_where_nothing_listens_fails_at_once_naming_the_setting():
    with socket.socket() as probe:  # a free port: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RuntimeSetupError, match="runtime.connect_timeout_s=30 s"):
        init_within(f"127.0.0.1:{port}", RuntimeConfig().connect_timeout_s)
    assert time.monotonic() - started < 5


def test_a_server_that_never_answers_gives_up_after_the_timeout():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SILENT_SERVER], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seconds, message = done.stdout.split(" ", 1)
    assert 2.5 < float(seconds) < 10 and "never answered" in message
    assert time.monotonic() - started < 60  # and the process exits, not stuck in Ray's retries


@pytest.mark.parametrize(("address", "target"), [
    ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head:10001", ("head", 10001)), ("[::1]:6379", ("::1", 6379)),
    ("no-port", None),
])
def test_gcs_target_parses_the_address_forms(address, target):
    assert gcs_target(address) == target
