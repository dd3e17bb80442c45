"""Ray custom metrics for DECA runs: the one place their names are defined.

`ray.util.metrics` exports each metric to Prometheus with a ``ray_`` prefix; counters
gain a ``_total`` suffix and histograms the ``_bucket``/``_sum``/``_count`` series.
`EXPORTED_METRICS` lists the resulting Prometheus names so the Grafana dashboard
(dashboards/grafana/deca.json) can be checked against them.

Every series carries a ``run`` tag (the run name); per-client series also ``client``.
The driver records everything (it already aggregates the clients' metrics dicts), so
no actor needs to know about metrics. `ray` is imported lazily: importing this module
costs nothing and works without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

PROMETHEUS_PREFIX = "ray_"

# Ray-side metric names (Prometheus adds the prefix/suffixes described above).
ROUND = "deca_round"
BLOCK = "deca_block"
INNER_STEP = "deca_inner_step"
CLIENT_LOSS = "deca_client_loss"
CONSENSUS_DISTANCE = "deca_consensus_distance"
SPECTRAL_GAP = "deca_spectral_gap"
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
    MetricSpec(ROUND, "gauge", "Current DECA round t.", RUN_TAGS),
    MetricSpec(BLOCK, "gauge", "Index of the active parameter block k.", RUN_TAGS),
    MetricSpec(INNER_STEP, "gauge", "Inner step r within the active block.", RUN_TAGS),
    MetricSpec(CLIENT_LOSS, "gauge", "Training loss of each client's last step.", CLIENT_TAGS),
    MetricSpec(CONSENSUS_DISTANCE, "gauge",
               "Mean squared distance of the clients' active block to their average.", RUN_TAGS),
    MetricSpec(SPECTRAL_GAP, "gauge",
               "Spectral gap 1 - |lambda_2| of the current mixing matrix.", RUN_TAGS),
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


class RayMetrics:
    """Creates the Ray metric objects on first use and records one step at a time.

    Recording is a no-op while Ray is not initialised (e.g. the in-process reference
    loop), so callers need no branches. `metrics_module` replaces `ray.util.metrics`
    in tests.
    """

    def __init__(self, run: str, *, metrics_module: Any = None) -> None:
        self.run = str(run)
        self._module = metrics_module
        self._objects: dict[str, Any] | None = None

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
        m[ROUND].set(float(round))
        m[BLOCK].set(float(block))
        m[INNER_STEP].set(float(inner_step))
        for client, loss in zip(ids, client_losses):
            m[CLIENT_LOSS].set(float(loss), tags={"client": client})
        if consensus_distance is not None:
            m[CONSENSUS_DISTANCE].set(float(consensus_distance))
        for client, sent in zip(ids, bytes_sent):
            if sent > 0:  # Counter.inc rejects 0 (e.g. a dropped client this step)
                m[BYTES_SENT].inc(float(sent), tags={"client": client})
        m[STEP_SECONDS].observe(float(step_s))
        m[EXCHANGE_SECONDS].observe(float(exchange_s))
        m[BARRIER_WAIT_SECONDS].observe(float(barrier_wait_s))
        for client, rate in zip(ids, tokens_per_s):
            m[TOKENS_PER_SECOND].set(float(rate), tags={"client": client})

    def record_spectral_gap(self, gap: float) -> None:
        """Record the spectral gap whenever the topology (mixing matrix) changes."""
        m = self._metrics()
        if m is None:
            return
        m[SPECTRAL_GAP].set(float(gap))
