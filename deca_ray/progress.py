"""The driver's progress bar (round / block / step, loss, ETA) and the final summary table."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tqdm import tqdm

from deca_ray.config import ExperimentConfig
from deca_ray.schedule import StepMetrics

if TYPE_CHECKING:
    from deca_ray.runner import RunResult

logger = logging.getLogger(__name__)


class ProgressReporter:
    """A tqdm bar over all inner steps; shows where training is and the clients' mean loss."""

    def __init__(self, config: ExperimentConfig, enabled: bool = True) -> None:
        self.config = config
        self.enabled = enabled
        self._bar: tqdm | None = None
        self._total: int | None = None

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def start(self, total_steps: int) -> None:
        self._total = total_steps
        if self.enabled:
            self._bar = tqdm(total=total_steps, desc="training", unit="step", dynamic_ncols=True)

    def update(self, metrics: StepMetrics) -> None:
        position = metrics.position
        where = (
            f"round {position.round_index + 1}/{self.config.algorithm.rounds} block {position.block_index} "
            f"step {position.inner_step + 1}/{self.config.algorithm.inner_steps} loss {metrics.mean_loss:.4f}"
        )
        if self._bar is None:
            # Job logs (ray job submit, --no-progress): one line per step instead of a bar.
            logger.info("step %d/%s: %s (%.1f s)", position.global_step + 1, self._total, where, metrics.step_time_s)
            return
        self._bar.set_postfix_str(where, refresh=False)
        self._bar.update(1)


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
        lines.append(f"MLflow: run {result.run_id} in {result.tracking_uri}  (mlflow ui --backend-store-uri "
                     f"{result.tracking_uri} --host 127.0.0.1)")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
