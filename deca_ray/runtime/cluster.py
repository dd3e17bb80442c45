"""Connect to a Ray cluster (``RAY_ADDRESS`` / config) or start an embedded local one."""

from __future__ import annotations

import logging
import os

import ray

from deca_ray import stopping
from deca_ray.config import RuntimeConfig
from deca_ray.errors import RuntimeSetupError
from deca_ray.runtime.local_processes import EmbeddedProcesses
from deca_ray.runtime.reach import init_within

logger = logging.getLogger(__name__)

_started_embedded = False
"""Whether this process's live connection is an embedded cluster it started (it stops on disconnect)."""
_embedded_processes: EmbeddedProcesses | None = None
"""That cluster's processes: none may outlive ``disconnect``."""


def connect(runtime: RuntimeConfig) -> bool:
    """Initialise Ray; returns True when this call did (so the caller must ``disconnect``), False
    when the caller's process was already connected (a benchmark running many experiments).

    Ray 2.60 enables token auth by default and a driver whose mode differs from the cluster's
    sees every actor die at creation, so the mode is always set explicitly.
    """
    global _started_embedded, _embedded_processes
    if ray.is_initialized():
        return False
    address = runtime.address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_AUTH_MODE", runtime.auth_mode)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address:
            init_within(address, runtime.connect_timeout_s, log_to_driver=True)  # bounded; Ray retries for minutes
            stopping.reinstall()  # ray.init replaced the SIGTERM handler with Ray's (which aborts)
            logger.info("connected to Ray cluster at %s", address)
            _started_embedded = False
            return True
        _embedded_processes = EmbeddedProcesses()
        context = ray.init(
            address="local",
            include_dashboard=runtime.include_dashboard,
            dashboard_host=runtime.dashboard_host,
            object_store_memory=runtime.object_store_memory_mb * 1024 * 1024,
            log_to_driver=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        target = address or "an embedded local cluster"
        raise RuntimeSetupError(
            f"cannot start or reach Ray ({target}): {error}. Check runtime.address / RAY_ADDRESS and that "
            f"RAY_AUTH_MODE ({os.environ['RAY_AUTH_MODE']}) matches the cluster's"
        ) from error
    _embedded_processes.started()
    stopping.reinstall()
    dashboard = f"http://{context.dashboard_url}" if context.dashboard_url else "off"
    logger.info("started embedded Ray cluster (dashboard: %s)", dashboard)
    _started_embedded = True
    return True


def started_embedded() -> bool:
    """Whether this process is connected to an embedded cluster it started (static: no autoscaler)."""
    return _started_embedded and ray.is_initialized()


def disconnect(connected_here: bool) -> None:
    """Undo ``connect``: only a connection this call's ``connect`` made (an embedded cluster stops)."""
    global _embedded_processes, _started_embedded
    if connected_here and ray.is_initialized():
        embedded = _embedded_processes if _started_embedded else None
        if embedded is not None:
            embedded.stop_watchdog()
        processes = embedded.tree() if embedded is not None else []
        ray.shutdown()
        if _started_embedded:
            EmbeddedProcesses.reap(processes)  # agents and workers its shutdown leaves behind
            _embedded_processes = None
            _started_embedded = False  # a later ray.init elsewhere (a test's own cluster) is not this one
            logger.info("stopped the embedded Ray cluster")
        else:
            logger.info("disconnected from the Ray cluster (it keeps running)")
