"""The driver's progress (round / block / step, loss, ETA) and the final summary table.

On a terminal it is a tqdm bar. Elsewhere (``ray job submit`` logs, CI, ``--no-progress``) it is
one log line every ``every_s`` seconds (and for the first and last step), not one per step.
Rounds and inner steps are counted from 1 (``round 1/3``), blocks by their 0-based index, as in
MLflow and Grafana.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tqdm import tqdm

from deca_ray.config import ExperimentConfig
from deca_ray.schedule import StepMetrics
from deca_ray.tracking_store import browse_command, is_server

if TYPE_CHECKING:
    from deca_ray.runner import RunResult

logger = logging.getLogger(__name__)

LINE_EVERY_S = 10.0
"""Seconds between two progress lines when there is no bar."""


class ProgressReporter:
    """Where training is and the clients' mean loss: a bar on a terminal, else a line every few seconds.

    ``enabled=False`` (``--no-progress``) or a bar stream (stderr) that is not a terminal gives the lines;
    ``interactive`` overrides the terminal check (tests).
    """

    def __init__(
        self, config: ExperimentConfig, enabled: bool = True, *, interactive: bool | None = None,
        every_s: float = LINE_EVERY_S, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.bar = enabled and (sys.stderr.isatty() if interactive is None else interactive)
        self.every_s = every_s
        self._clock = clock
        self._bar: tqdm | None = None
        self._total: int | None = None
        self._last_line: tuple[float, int] | None = None  # (time, steps done) at the last line

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def start(self, total_steps: int) -> None:
        self._total = total_steps
        if self.bar:
            self._bar = tqdm(total=total_steps, desc="training", unit="step", dynamic_ncols=True)

    def update(self, metrics: StepMetrics) -> None:
        where = self.where(metrics)
        if self._bar is not None:
            self._bar.set_postfix_str(where, refresh=False)
            self._bar.update(1)
            return
        now, done = self._clock(), metrics.position.global_step + 1
        if self._last_line is not None and now - self._last_line[0] < self.every_s and done != self._total:
            return
        since, done_then = self._last_line or (now, done - 1)
        rate = (now - since) / max(1, done - done_then) if self._last_line else metrics.step_time_s
        logger.info("step %d/%s: %s (%.2f s/step)", done, self._total, where, rate)
        self._last_line = (now, done)

    def where(self, metrics: StepMetrics) -> str:
        """``round 1/3 block 0 step 2/8 loss 1.2345``."""
        position, algorithm = metrics.position, self.config.algorithm
        return (f"round {position.round_number}/{algorithm.rounds} block {position.block_index} "
                f"step {position.step_number}/{algorithm.inner_steps} loss {metrics.mean_loss:.4f}")


def format_summary(result: RunResult) -> str:
    """A plain-text table: held-out metrics before and after training, and where things are."""
    summary = result.summary
    before, after = summary.get("before", {}), summary.get("after", {})
    keys = sorted(set(before) | set(after), key=lambda key: (not key.startswith("avg/"), key))
    lines = ["", f"{'held-out metric':<34}{'before':>12}{'after':>12}", "-" * 58]
    for key in keys:
        lines.append(f"{key:<34}{_fmt(before.get(key)):>12}{_fmt(after.get(key)):>12}")
    lines += [
        "-" * 58,
        f"steps: {summary.get('steps')}   final mean train loss: {_fmt(summary.get('final_mean_loss'))}   "
        f"wall time: {summary.get('wall_time_s', 0):.0f} s",
        f"run directory: {result.run_dir}",
    ]
    if result.run_id:
        uri = str(result.tracking_uri)
        lines.append(f"MLflow: run {result.run_id} in {uri}" + ("" if is_server(uri) else f"  ({browse_command(uri)})"))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
