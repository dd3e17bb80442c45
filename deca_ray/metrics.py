"""Ray custom metrics for DECA runs: the one place their names are defined.

`ray.util.metrics` exports each metric to Prometheus with a ``ray_`` prefix; counters
gain a ``_total`` suffix and histograms the ``_bucket``/``_sum``/``_count`` series.
`EXPORTED_METRICS` lists the resulting Prometheus names so the Grafana dashboard
(dashboards/grafana/deca.json) can be checked against them.

Every series carries a ``run`` tag (the run name); per-client series also ``client``.
The driver records everything (it already aggregates the clients' metrics dicts), so
no actor needs to know about metrics. `ray` is imported lazily: importing this module
costs nothing and works without Ray.

Rounds and inner steps are exported counted from 1 (``round 1/3`` as the CLI prints it, and
MLflow's ``schedule/round``); blocks keep their 0-based index, the number ``blocks.fixed_order``
names. Ray 2.60 exports a gauge only for about two metrics report intervals after it was last set
(measured: ~20 s with the default 10 s interval, ~2 s with ``RAY_metrics_report_interval_ms=1000``),
so a gauge set once (spectral gap, number of clients) or not touched during a long evaluation
would vanish from Prometheus: used as a context manager, `RayMetrics` re-sets every gauge's last
value on a timer of half the report interval.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deca_ray.schedule import StepMetrics

PROMETHEUS_PREFIX = "ray_"

# Ray-side metric names (Prometheus adds the prefix/suffixes described above).
ROUND = "deca_round"
BLOCK = "deca_block"
INNER_STEP = "deca_inner_step"
CLIENT_LOSS = "deca_client_loss"
CONSENSUS_DISTANCE = "deca_consensus_distance"
SPECTRAL_GAP = "deca_spectral_gap"
NUM_CLIENTS = "deca_num_clients"
TOKENS_PER_SECOND = "deca_tokens_per_second"
BYTES_SENT = "deca_bytes_sent"
STEP_SECONDS = "deca_step_seconds"
EXCHANGE_SECONDS = "deca_exchange_seconds"
BARRIER_WAIT_SECONDS = "deca_barrier_wait_seconds"

RUN_TAGS: tuple[str, ...] = ("run",)
CLIENT_TAGS: tuple[str, ...] = ("run", "client")

# Seconds, roughly ×2–2.5 apart: a tiny CPU model's step takes ~10 ms, a barrier behind
# a restarting actor or a GPU block exchange of a large model can take minutes.
SECONDS_BOUNDARIES: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # "gauge" | "counter" | "histogram"
    description: str
    tag_keys: tuple[str, ...]

    @property
    def prometheus_name(self) -> str:
        """Name a PromQL query uses (histograms: the base name, before _bucket/_sum/_count)."""
        suffix = "_total" if self.kind == "counter" else ""
        return PROMETHEUS_PREFIX + self.name + suffix


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(ROUND, "gauge", "Current DECA round t, counted from 1.", RUN_TAGS),
    MetricSpec(BLOCK, "gauge", "Index of the active parameter block k (0-based, as in the config).", RUN_TAGS),
    MetricSpec(INNER_STEP, "gauge", "Inner step r within the active block, counted from 1.", RUN_TAGS),
    MetricSpec(CLIENT_LOSS, "gauge", "Training loss of each client's last step.", CLIENT_TAGS),
    MetricSpec(CONSENSUS_DISTANCE, "gauge",
               "Mean squared distance of the clients' active block to their average.", RUN_TAGS),
    MetricSpec(SPECTRAL_GAP, "gauge",
               "Spectral gap 1 - |lambda_2| of the current mixing matrix.", RUN_TAGS),
    MetricSpec(NUM_CLIENTS, "gauge", "Clients taking part (dropped clients leave the count).", RUN_TAGS),
    MetricSpec(TOKENS_PER_SECOND, "gauge", "Training tokens per second of each client.",
               CLIENT_TAGS),
    MetricSpec(BYTES_SENT, "counter", "Bytes of block tensors each client sent to neighbours.",
               CLIENT_TAGS),
    MetricSpec(STEP_SECONDS, "histogram", "Wall time of one inner step, driver's view.",
               RUN_TAGS),
    MetricSpec(EXCHANGE_SECONDS, "histogram",
               "Time spent fetching neighbours' blocks and mixing in one step.", RUN_TAGS),
    MetricSpec(BARRIER_WAIT_SECONDS, "histogram",
               "Time between the first and the last client finishing a step.", RUN_TAGS),
)

EXPORTED_METRICS: tuple[str, ...] = tuple(spec.prometheus_name for spec in METRICS)

REFRESH_S = 5.0
"""The keep-alive's longest period: half of Ray's default 10 s metrics report interval."""


def refresh_interval_s() -> float:
    """Half the metrics report interval this process's Ray uses (``RAY_metrics_report_interval_ms``)."""
    report_ms = float(os.environ.get("RAY_metrics_report_interval_ms", 10_000))
    return min(REFRESH_S, max(0.1, report_ms / 2000))


class RayMetrics:
    """Creates the Ray metric objects on first use and records one step at a time.

    Recording is a no-op while Ray is not initialised (e.g. the in-process reference
    loop), so callers need no branches. `metrics_module` replaces `ray.util.metrics`
    in tests. ``spectral_gap``: asked again whenever the number of live clients changes (a drop
    re-weights the graph). ``with RayMetrics(...)`` keeps every gauge exported until the block ends.
    """

    def __init__(
        self, run: str, *, metrics_module: Any = None, spectral_gap: Callable[[], float] | None = None,
        refresh_s: float | None = None,
    ) -> None:
        self.run = str(run)
        self._module = metrics_module
        self._objects: dict[str, Any] | None = None
        self._spectral_gap = spectral_gap
        self._refresh_s = refresh_s if refresh_s is not None else refresh_interval_s()
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}  # last value of each series
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._num_clients: int | None = None

    def __enter__(self) -> RayMetrics:
        if self._enabled():
            self._thread = threading.Thread(target=self._keep_alive, name="deca-metrics-keepalive", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._refresh_s + 1)
            self._thread = None

    def _keep_alive(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self.refresh()

    def refresh(self) -> None:
        """Set every gauge series to its last value again (Ray exports only recently set gauges)."""
        m = self._metrics()
        if m is None:
            return
        with self._lock:
            series = list(self._gauges.items())
        for (name, tags), value in series:
            m[name].set(value, tags=dict(tags) or None)

    def _set(self, name: str, value: float, tags: dict[str, str] | None = None) -> None:
        m = self._metrics()
        if m is None:
            return
        with self._lock:
            self._gauges[(name, tuple(sorted((tags or {}).items())))] = float(value)
        m[name].set(float(value), tags=tags)

    def _enabled(self) -> bool:
        if self._module is not None:
            return True
        import ray

        return ray.is_initialized()

    def _metrics(self) -> dict[str, Any] | None:
        if self._objects is not None:
            return self._objects
        if not self._enabled():
            return None
        module = self._module
        if module is None:
            from ray.util import metrics as module
        objects: dict[str, Any] = {}
        for spec in METRICS:
            if spec.kind == "gauge":
                obj = module.Gauge(spec.name, description=spec.description, tag_keys=spec.tag_keys)
            elif spec.kind == "counter":
                obj = module.Counter(spec.name, description=spec.description,
                                     tag_keys=spec.tag_keys)
            else:
                obj = module.Histogram(spec.name, description=spec.description,
                                       boundaries=list(SECONDS_BOUNDARIES),
                                       tag_keys=spec.tag_keys)
            obj.set_default_tags({"run": self.run})
            objects[spec.name] = obj
        self._objects = objects
        return objects

    def record_step(
        self,
        round: int,
        block: int,
        inner_step: int,
        client_losses: Sequence[float],
        consensus_distance: float | None,
        bytes_sent: Sequence[int],
        step_s: float,
        exchange_s: float,
        barrier_wait_s: float,
        tokens_per_s: Sequence[float],
        clients: Sequence[int] | None = None,
    ) -> None:
        """Record one inner step; per-client lists follow ``clients`` (default: ids 0..n-1)."""
        m = self._metrics()
        if m is None:
            return
        ids = [str(client) for client in (clients if clients is not None else range(len(client_losses)))]
        self._set(ROUND, round)
        self._set(BLOCK, block)
        self._set(INNER_STEP, inner_step)
        for client, loss in zip(ids, client_losses, strict=False):
            self._set(CLIENT_LOSS, loss, tags={"client": client})
        if consensus_distance is not None:
            self._set(CONSENSUS_DISTANCE, consensus_distance)
        for client, sent in zip(ids, bytes_sent, strict=False):
            if sent > 0:  # Counter.inc rejects 0 (e.g. a dropped client this step)
                m[BYTES_SENT].inc(float(sent), tags={"client": client})
        m[STEP_SECONDS].observe(float(step_s))
        m[EXCHANGE_SECONDS].observe(float(exchange_s))
        m[BARRIER_WAIT_SECONDS].observe(float(barrier_wait_s))
        for client, rate in zip(ids, tokens_per_s, strict=False):
            self._set(TOKENS_PER_SECOND, rate, tags={"client": client})
        self._reset_run_constants()

    def record(self, metrics: StepMetrics) -> None:
        """One inner step from the driver's StepMetrics (rounds and inner steps counted from 1)."""
        position = metrics.position
        live = len(metrics.clients) + len(metrics.late_clients)
        if self._num_clients is not None and live != self._num_clients:
            self.record_num_clients(live)
            if self._spectral_gap is not None:
                self.record_spectral_gap(self._spectral_gap())
        self.record_step(
            round=position.round_number, block=position.block_index, inner_step=position.step_number,
            client_losses=metrics.client_losses, consensus_distance=metrics.consensus_distance,
            bytes_sent=metrics.bytes_sent, step_s=metrics.step_time_s, exchange_s=metrics.exchange_time_s,
            barrier_wait_s=metrics.barrier_wait_s, tokens_per_s=metrics.tokens_per_s, clients=metrics.clients,
        )

    def record_run(self, spectral_gap: float, num_clients: int) -> None:
        """The run's constants, once at start (re-set with every step and by the keep-alive)."""
        self.record_spectral_gap(spectral_gap)
        self.record_num_clients(num_clients)

    def record_spectral_gap(self, gap: float) -> None:
        """Record the spectral gap whenever the topology (mixing matrix) changes."""
        self._set(SPECTRAL_GAP, gap)

    def record_num_clients(self, num_clients: int) -> None:
        self._num_clients = num_clients
        self._set(NUM_CLIENTS, num_clients)

    def _reset_run_constants(self) -> None:
        m = self._metrics()
        if m is None:
            return
        with self._lock:
            constants = [(name, value) for (name, tags), value in self._gauges.items()
                         if name in (SPECTRAL_GAP, NUM_CLIENTS)]
        for name, value in constants:
            m[name].set(value)
