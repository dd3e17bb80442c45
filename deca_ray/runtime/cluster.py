"""Connect to a Ray cluster (``RAY_ADDRESS`` / config) or start an embedded local one."""

from __future__ import annotations

import logging
import os

import ray

from deca_ray.config import RuntimeConfig
from deca_ray.errors import RuntimeSetupError

logger = logging.getLogger(__name__)


def connect(runtime: RuntimeConfig) -> bool:
    """Initialise Ray; returns True when this call did (so the caller must ``disconnect``), False
    when the caller's process was already connected (a benchmark running many experiments).

    Ray 2.60 enables token auth by default and a driver whose mode differs from the cluster's
    sees every actor die at creation, so the mode is always set explicitly.
    """
    if ray.is_initialized():
        return False
    address = runtime.address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_AUTH_MODE", runtime.auth_mode)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
            logger.info("connected to Ray cluster at %s", address)
            return True
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
    dashboard = f"http://{context.dashboard_url}" if context.dashboard_url else "off"
    logger.info("started embedded Ray cluster (dashboard: %s)", dashboard)
    return True


def disconnect(connected_here: bool) -> None:
    """Undo ``connect``: only a connection this call's ``connect`` made (an embedded cluster stops)."""
    if connected_here and ray.is_initialized():
        ray.shutdown()
        logger.info("disconnected from Ray (an embedded cluster stops with it)")
