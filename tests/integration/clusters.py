"""Real Ray clusters for integration tests, each started and stopped by the test that uses it.

- ``head_node``: ``ray start --head --block`` with its own temp dir and ports (the dashboard, the
  job API, Prometheus service discovery, optionally Ray's fake autoscaling provider);
- ``multinode_cluster``: ``ray.cluster_utils.Cluster``, several raylets on this machine, the test
  process connected as the driver.

Other Ray clusters run on this machine (other tests, benchmarks): nothing here uses ``ray stop``;
a cluster is stopped through its own processes, found by the GCS address it was started on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
OBJECT_STORE_BYTES = 100 * 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_env(**extra: str) -> dict[str, str]:
    """This process's environment for Ray subprocesses: auth off (loopback only), metrics every second."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_metrics_report_interval_ms": "1000", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


@dataclass
class HeadNode:
    """A running ``ray start --head`` cluster."""

    gcs_address: str
    dashboard_url: str
    metrics_url: str
    temp_dir: Path
    env: dict[str, str]

    @property
    def session_dir(self) -> Path:
        return (self.temp_dir / "session_latest").resolve()

    @property
    def service_discovery_file(self) -> Path:
        """Where this cluster's dashboard lists every node's metrics endpoint for Prometheus (file_sd)."""
        return self.session_dir / "prom_metrics_service_discovery.json"


@contextmanager
def head_node(num_cpus: float = 2, extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
              gcs_port: int | None = None) -> Iterator[HeadNode]:
    """A head node with the dashboard, stopped afterwards with every process on its GCS address.

    ``ray start --block`` keeps the head in a process group of its own, so a SIGTERM to that group
    stops exactly this cluster; nodes it launched itself (the fake autoscaler's) are found by address.
    """
    # Ray's socket paths must stay under the 107-byte Unix limit: pytest's tmp_path is too deep.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    env = ray_env(**(env or {}))
    gcs_port = gcs_port or free_port()
    dashboard_port, metrics_port = free_port(), free_port()
    # Another local cluster holds Ray's default agent ports; without its own, the job agent never starts.
    agent_ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                   f"--runtime-env-agent-port={free_port()}"]
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs_port}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard_port}", f"--num-cpus={num_cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}",
         "--include-dashboard=true", f"--temp-dir={temp_dir}", f"--metrics-export-port={metrics_port}",
         *agent_ports, *extra_args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        wait_for_dashboard(dashboard, head)
        address = f"{_node_ip()}:{gcs_port}"
        yield HeadNode(address, dashboard, f"http://127.0.0.1:{metrics_port}/metrics", temp_dir, env)
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block stops the cluster it started on SIGTERM
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        # What left the group or was never in it: the head's own services name its temp dir, nodes the
        # (fake) autoscaler started name its GCS address.
        stop_processes_of(f"{_node_ip()}:{gcs_port}", str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_dashboard(address: str, head: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {head.returncode}")
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the Ray dashboard at {address} did not answer within {timeout_s} s")


def stop_processes_of(gcs_address: str, *others: str, grace_s: float = 20) -> None:
    """SIGTERM, then SIGKILL, every process whose command line names this GCS address (raylets, workers)
    or one of ``others`` (e.g. the cluster's own temp dir)."""
    pids = _pids_naming(gcs_address, others)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.5)
        pids = [pid for pid in pids if _alive(pid)]
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _pids_naming(gcs_address: str, others: Sequence[str] = ()) -> list[int]:
    needles = (f"--gcs-address={gcs_address}", f"--gcs_address={gcs_address}", f"--address={gcs_address}", *others)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(needle in cmdline for needle in needles):
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _node_ip() -> str:
    """The address Ray gives this machine's nodes (and the fake autoscaler's provider uses)."""
    from ray._private.services import get_node_ip_address

    return get_node_ip_address()


# ---------------------------------------------------------------------- ray.cluster_utils.Cluster


@contextmanager
def multinode_cluster(workers: Sequence[Mapping[str, Any]], head_cpus: float = 0) -> Iterator[Any]:
    """A head with ``head_cpus`` (default: no room for clients) and one raylet per entry of ``workers``
    (``Cluster.add_node`` arguments); the test process is its driver until the block ends."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # the session's single-node cluster; tests that need it start it again
        ray.shutdown()
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": head_cpus, "include_dashboard": False, "object_store_memory": OBJECT_STORE_BYTES})
    try:
        for node in workers:
            add_worker(cluster, **node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if cluster.head_node is not None:
            cluster.remove_node(cluster.head_node)


def add_worker(cluster: Any, num_cpus: float = 1, **node_args: Any) -> Any:
    """One more raylet with its own small object store."""
    return cluster.add_node(num_cpus=num_cpus, object_store_memory=OBJECT_STORE_BYTES, **node_args)


def node_of(cluster: Any, node_id: str) -> Any:
    """The Cluster's Node object behind a Ray node id."""
    return next(node for node in cluster.worker_nodes if node.node_id == node_id)


def write_json(path: Path, payload: Any) -> Path:
    path.write_text(json.dumps(payload))
    return path
