"""The embedded Ray cluster's processes: found when it starts, and none left running after it stops.

``ray.shutdown()`` stops the processes it started (GCS, raylet, dashboard, ...), but their own
children (dashboard agents and modules, idle workers) can outlive them for a minute, some
listening on every interface. ``EmbeddedProcesses`` remembers the processes that appeared
while the cluster started (this process's new descendants, found by process id) and after the
shutdown ends whatever of their process trees is still there, by process id. Should this process
die without a shutdown (SIGKILL), a watchdog process (``watchdog.py``) ends them instead.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

_GRACE_S = 3.0


class EmbeddedProcesses:
    """Snapshot this process's children before an embedded cluster starts; ``reap`` after it stops."""

    def __init__(self) -> None:
        self._before = {child.pid for child in psutil.Process().children(recursive=True)}
        self.roots: list[psutil.Process] = []
        self._watchdog: subprocess.Popen | None = None

    def started(self) -> None:
        """Record the processes the cluster's start added (call right after ``ray.init``), and start a
        watchdog that ends them should this process die without stopping them (SIGKILL)."""
        self.roots = [child for child in psutil.Process().children(recursive=True) if child.pid not in self._before]
        self._watchdog = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("watchdog.py")), str(os.getpid()),
             *(str(root.pid) for root in self.roots)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def stop_watchdog(self) -> None:
        """This process stops the cluster itself: the watchdog is not needed any more."""
        if self._watchdog is not None:
            self._watchdog.terminate()
            self._watchdog.wait(timeout=10)
            self._watchdog = None

    def tree(self) -> list[psutil.Process]:
        """The cluster's processes now, with all their descendants (call before ``ray.shutdown``)."""
        found: dict[int, psutil.Process] = {}
        for root in self.roots:
            try:
                found.setdefault(root.pid, root)
                for child in root.children(recursive=True):
                    found.setdefault(child.pid, child)
            except psutil.Error:
                continue  # already gone
        return list(found.values())

    @staticmethod
    def reap(processes: list[psutil.Process]) -> None:
        """End those of ``processes`` still running: SIGTERM, then SIGKILL after a grace period."""
        alive = [process for process in processes if _running(process)]
        for process in alive:
            try:
                process.terminate()
            except psutil.Error:
                pass
        _, stubborn = psutil.wait_procs(alive, timeout=_GRACE_S)
        for process in stubborn:
            try:
                process.kill()
            except psutil.Error:
                pass
        if alive:
            logger.debug("ended %d leftover process(es) of the embedded Ray cluster", len(alive))


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
