"""Ends a run's MLflow run as KILLED when the driver dies without ending it (SIGKILL, the OOM killer).

The tracker starts this file as a script (``python .../run_watchdog.py DRIVER_PID TRACKING_URI RUN_ID``,
so only psutil is imported while it waits) in its own session, so Ctrl-C does not reach it. Once a
second it checks the driver; when the driver is gone and the run is still RUNNING, it marks the run
KILLED, as a stopped run is marked. A driver that ends its run itself stops the watchdog first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

_POLL_S = 1.0


class RunWatchdog:
    """The watchdog process of one MLflow run."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(os.getpid()), tracking_uri, run_id],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def stop(self) -> None:
        """The driver ends the run itself: no watching needed any more."""
        self._process.terminate()
        self._process.wait(timeout=10)


def watch(driver_pid: int, tracking_uri: str, run_id: str) -> None:
    """Until ``driver_pid`` is gone; then mark the run KILLED unless it has ended."""
    try:
        driver = psutil.Process(driver_pid)
        while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
            time.sleep(_POLL_S)
    except psutil.Error:
        pass  # gone
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status="KILLED")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[1]), sys.argv[2], sys.argv[3])
