"""Every panel of the Grafana dashboard shows data: a real Prometheus scrapes a live run.

A ``ray start --head`` cluster on this machine, Debian's ``prometheus`` on 127.0.0.1 (its own
free port, a temp config whose file-based service discovery reads the cluster's own
``<session dir>/prom_metrics_service_discovery.json``), and a short ``deca-ray run`` on the tiny
model. Afterwards every PromQL ``expr`` of dashboards/grafana/deca.json is evaluated through
Prometheus's HTTP API over the run's time range; a query without a finite value fails the test.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.integration.clusters import HeadNode, free_port, head_node

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "grafana" / "deca.json"
RATE_INTERVAL = "10s"
"""What Grafana's ``$__rate_interval`` becomes here: several 1 s scrapes."""
STEPS = 3 * 2 * 40
"""The run's inner steps (rounds × blocks × inner steps): enough that training spans several 1 s metric
exports even on a fast idle machine, where 48 steps once fit inside one export and the histogram
panels' ``rate`` had no two samples to work with."""
CONFIG = """
name: promtest
num_clients: 2
model: {name: tiny-llama, tiny: {num_layers: 2, hidden_size: 32, num_heads: 4, num_kv_heads: 2, intermediate_size: 64}}
data: {max_train_examples: 40, test_size: 10, max_tokens: 48, body_words: 20, batch_size: 2}
algorithm: {rounds: 3, inner_steps: 40, lr: 1.0e-3, blocks: {layers_per_block: 1}}
runtime: {backend: ray, cpus_per_client: 0.25, torch_threads: 1}
evaluation: {per_client: false}
"""

PROMETHEUS_CONFIG = """
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: ray
    file_sd_configs:
      - files: ['{service_discovery}']
        refresh_interval: 1s
"""


def dashboard_queries() -> list[str]:
    """Every target's PromQL of the dashboard, in panel order."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _prometheus(config_dir: Path, service_discovery: Path) -> tuple[subprocess.Popen, str]:
    config = config_dir / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(service_discovery=service_discovery))
    port = free_port()
    process = subprocess.Popen(
        [shutil.which("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={config_dir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=(config_dir / "prometheus.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None:
                log = (config_dir / "prometheus.log").read_text()[-2000:]
                raise RuntimeError(f"prometheus exited: {log}") from None
            time.sleep(0.5)
    process.terminate()
    raise TimeoutError("prometheus did not become ready within 60 s")


def _api(url: str, path: str, **params: str) -> dict:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=30) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def _finite_points(data: dict) -> list[tuple[float, float]]:
    """(time, value) of every finite sample of a range query's result, by time."""
    points = [(float(stamp), float(value)) for series in data["result"] for stamp, value in series["values"]]
    return sorted(point for point in points if math.isfinite(point[1]))


def _longest_gap_s(points: list[tuple[float, float]]) -> float:
    stamps = [stamp for stamp, _ in points]
    return max((later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)), default=0.0)


def _train(head: HeadNode, workdir: Path) -> tuple[subprocess.CompletedProcess, str, float, float]:
    """A short run against ``head``; (the finished process, its run name, start and end times)."""
    (workdir / "tiny.yaml").write_text(CONFIG)
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "deca_ray", "run", "tiny.yaml", "--no-progress", "--set",
         f"tracking.output_dir={workdir / 'runs'}"],
        cwd=workdir, env={**head.env, "RAY_ADDRESS": head.gcs_address}, capture_output=True, text=True, timeout=900,
    )
    run_dirs = [path.name for path in (workdir / "runs").glob("promtest-*") if path.is_dir()]
    return done, (run_dirs[0] if run_dirs else ""), started, time.time()


def _wait_for_histograms(url: str, run: str, timeout_s: float = 30) -> None:
    """Until the step histogram has counted every step and been scraped twice since (``rate`` needs two samples)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = time.time()
        data = _api(url, "/api/v1/query_range", query=f'ray_deca_step_seconds_count{{run="{run}"}}',
                    start=f"{now - 60:.3f}", end=f"{now:.3f}", step="1s")
        if [value for _, value in _finite_points(data)].count(STEPS) >= 2:
            return
        time.sleep(1)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (apt-get install prometheus)")
def test_every_dashboard_query_returns_data_from_a_live_run(tmp_path):
    # Prepare: a head node, and Prometheus scraping what its service discovery file lists
    with head_node(num_cpus=2) as head:
        assert head.service_discovery_file.parent.name.startswith("session_")
        prometheus, url = _prometheus(tmp_path, head.service_discovery_file)
        try:
            # Execute: one short run, then every dashboard query over the run's time range
            done, run, started, ended = _train(head, tmp_path)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            _wait_for_histograms(url, run)
            results = {}
            for expr in dashboard_queries():
                query = expr.replace("$run", run).replace("$__rate_interval", RATE_INTERVAL)
                data = _api(url, "/api/v1/query_range", query=query, start=f"{started:.3f}",
                            end=f"{time.time():.3f}", step="1s")
                results[expr] = _finite_points(data)
            runs = _api(url, "/api/v1/label/run/values", **{"match[]": "ray_deca_round"})
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
    # Assert: the run is selectable in the dashboard's variable, and no panel is empty
    assert run in runs, runs
    empty = [expr for expr, values in results.items() if not values]
    assert not empty, f"dashboard queries with no data for run {run}: {empty}"
    # Rounds are counted from 1 there, as the CLI prints them: 3 rounds
    rounds = [value for _, value in results['max(ray_deca_round{run="$run"})']]
    assert min(rounds) >= 1 and max(rounds) == 3
    # Run constants set once stay exported the whole run (evaluation included): no gap in their series
    for constant, expected in (("ray_deca_num_clients", 2.0), ("ray_deca_spectral_gap", None)):
        points = results[f'max({constant}{{run="$run"}})']
        assert expected is None or {value for _, value in points} == {expected}
        assert _longest_gap_s(points) <= 5, f"{constant} stopped being exported during the run"
