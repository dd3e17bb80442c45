"""Ends the embedded Ray cluster's processes when the driver dies without doing so itself (SIGKILL).

Run as a script (``python .../watchdog.py DRIVER_PID ROOT_PID...``, so that only psutil is imported),
in its own session (Ctrl-C does not reach it). Once a second it notes the process trees under the
cluster's root processes; when the driver is gone it terminates every process it last saw. A driver
that exits normally stops its cluster itself and then this watchdog, by process id.
"""

from __future__ import annotations

import signal
import sys
import time

import psutil

_POLL_S = 1.0
_GRACE_S = 3.0


def watch(driver_pid: int, root_pids: list[int]) -> None:
    """Until ``driver_pid`` is gone; then end what was last seen under ``root_pids``."""
    driver = psutil.Process(driver_pid)
    roots = [psutil.Process(pid) for pid in root_pids if psutil.pid_exists(pid)]
    seen: dict[int, psutil.Process] = {}
    while _alive(driver):
        for root in roots:
            try:
                for process in [root, *root.children(recursive=True)]:
                    seen.setdefault(process.pid, process)
            except psutil.Error:
                continue
        time.sleep(_POLL_S)
    alive = [process for process in seen.values() if _alive(process)]
    for process in alive:
        try:
            process.terminate()
        except psutil.Error:
            pass
    for process in psutil.wait_procs(alive, timeout=_GRACE_S)[1]:
        try:
            process.kill()
        except psutil.Error:
            pass


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[1]), [int(pid) for pid in sys.argv[2:]])
