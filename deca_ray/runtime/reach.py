"""Reaching an existing Ray cluster within a deadline (``runtime.connect_timeout_s``).

Ray's own ``ray.init(address=...)`` retries an unreachable GCS for many minutes and, blocked
in C++, lets no signal through. Here the address is first probed with a plain TCP connection
(refused or silent: an error at once, or after the timeout), and ``ray.init`` then runs in a
helper thread that the main thread waits for, so the wait is bounded and Ctrl-C / SIGTERM still
act. Only connections to an existing cluster go through the thread: an embedded cluster's
processes are tied to the thread that starts them (Linux parent-death signal), so it starts in
the main thread.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import ray

from deca_ray.errors import RuntimeSetupError


def init_within(address: str, timeout_s: float, **options: Any) -> None:
    """``ray.init(address=address, **options)``, giving up after ``timeout_s`` with a clear error."""
    deadline = time.monotonic() + timeout_s
    target = gcs_target(address)
    if target is not None:
        probe(address, target, timeout_s)
    outcome: dict[str, BaseException | None] = {}

    def connect() -> None:
        try:
            ray.init(address=address, **options)
            outcome["error"] = None
        except BaseException as error:  # handed to the waiting main thread
            outcome["error"] = error

    thread = threading.Thread(target=connect, name="ray-connect", daemon=True)
    thread.start()
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(timeout=0.2)  # short joins: signal handlers run in between
    if "error" not in outcome:
        raise RuntimeSetupError(_unreachable(address, timeout_s, "Ray accepted the connection but never answered"))
    if outcome["error"] is not None:
        raise outcome["error"]


def gcs_target(address: str) -> tuple[str, int] | None:
    """(host, port) that ``address`` connects to (``auto``: the last cluster started here), if known."""
    if address in ("auto", "local"):
        from ray._private.services import canonicalize_bootstrap_address

        try:
            address = canonicalize_bootstrap_address(address) or ""
        except (ConnectionError, ValueError):
            return None  # ray.init reports "no cluster found" itself, at once
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def probe(address: str, target: tuple[str, int], timeout_s: float) -> None:
    """A TCP connection to the GCS (or Ray Client server): fails fast where nothing listens."""
    try:
        socket.create_connection(target, timeout=timeout_s).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise RuntimeSetupError(_unreachable(address, timeout_s, f"{target[0]}:{target[1]}: {reason}")) from None


def _unreachable(address: str, timeout_s: float, why: str) -> str:
    return (f"cannot reach the Ray cluster at {address!r} within runtime.connect_timeout_s={timeout_s:g} s ({why}). "
            "Check runtime.address / RAY_ADDRESS and that the cluster is up (`ray status`), raise "
            "runtime.connect_timeout_s for a slow network, or unset both for an embedded local cluster")
