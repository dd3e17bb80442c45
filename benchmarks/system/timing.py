"""Small statistics over StepMetrics shared by the system benchmark's sections."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from deca_ray.schedule import StepMetrics


def steady_steps(history: Sequence[StepMetrics]) -> list[StepMetrics]:
    """Steps after the first of each block activation (that one also activates the block)."""
    return [metrics for metrics in history if metrics.position.inner_step > 0]


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no samples: run more than one inner step per block activation")
    return float(statistics.median(values))


def median_time_s(work: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``work()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        work()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return median(samples)


def ratio_entry(label: str, measured: float, target: float | None, rule: str, **extra: object) -> dict:
    """One row of BENCHMARKS.md: ``measured <rule> target`` decides ``met`` (rule: ``<=`` or ``==``)."""
    if target is None:
        met = None
    elif rule == "<=":
        met = measured <= target
    elif rule == "==":
        met = measured == target
    else:
        raise ValueError(f"unknown rule {rule!r}; use '<=' or '=='")
    return {"label": label, "ratio": measured, "target": target, "rule": rule, "met": met, **extra}
