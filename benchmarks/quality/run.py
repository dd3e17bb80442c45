"""``python -m benchmarks quality``: every method and ablation of section Q, one result file per run.

Runs go one after another on one Ray cluster (started here unless ``RAY_ADDRESS`` names one);
each is a normal tracked run (MLflow, run directory), and its result file records the commit,
date, machine, config, seed, final metrics and loss / consensus curves.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.quality.presets import QualityPreset, QualityRun
from benchmarks.results import NoResultError, metadata
from deca_ray.config import ExperimentConfig, config_from_dict, merge_overrides

logger = logging.getLogger(__name__)

SUITE_FILE = "suite.json"


def run_quality_benchmark(
    preset: QualityPreset, results_dir: Path, output_dir: Path = Path("runs/bench-quality"),
    only: Callable[[QualityRun], bool] | None = None, into: Path | None = None,
) -> Path:
    """Run the preset's runs into a new ``<results_dir>/quality-<stamp>/``; returns that directory.

    ``into``: re-run those runs inside an existing suite instead (after a fix that changes them);
    each replaced result moves to ``superseded/`` and ``suite.json`` lists the re-run.
    """
    runs = [run for run in preset.runs if only is None or only(run)]
    if into is not None:
        return _rerun_into(preset, runs, into, output_dir)
    suite_dir = _new_suite_dir(results_dir)
    configs = {run.name: run_config(preset, run, output_dir) for run in runs}  # bad overrides fail before any run
    started = time.perf_counter()
    with _one_ray_connection(configs.values()):
        for run in runs:
            logger.info("quality benchmark: %s (%s)", run.name, run.label)
            _write(suite_dir / f"{run.name}.json", _run_one(preset, run, configs[run.name]))
    suite = {"preset": preset.name, "runs": [run.name for run in runs], "wall_time_s": time.perf_counter() - started,
             "metadata": metadata()}
    _write(suite_dir / SUITE_FILE, suite)
    return suite_dir


def _rerun_into(preset: QualityPreset, runs: list[QualityRun], suite_dir: Path, output_dir: Path) -> Path:
    from deca_ray.errors import ConfigError

    if not (suite_dir / SUITE_FILE).is_file():
        raise ConfigError(f"--into {suite_dir}: no {SUITE_FILE} there; pass a finished quality-* suite directory")
    suite = json.loads((suite_dir / SUITE_FILE).read_text())
    if suite["preset"] != preset.name:
        raise ConfigError(f"--into {suite_dir} holds preset {suite['preset']!r}, not {preset.name!r}")
    configs = {run.name: run_config(preset, run, output_dir) for run in runs}
    with _one_ray_connection(configs.values()):
        for run in runs:
            logger.info("quality benchmark, re-run into %s: %s (%s)", suite_dir.name, run.name, run.label)
            result = _run_one(preset, run, configs[run.name])
            _supersede(suite_dir, run.name)
            _write(suite_dir / f"{run.name}.json", result)
            suite.setdefault("reruns", []).append(
                {"run": run.name, "commit": result["metadata"]["git"]["commit"],
                 "date_utc": result["metadata"]["date_utc"],
                 "wall_time_s": result["metrics"]["wall_time_s"]})
            if run.name not in suite["runs"]:
                suite["runs"].append(run.name)
    staged = suite_dir / f"{SUITE_FILE}.tmp"
    staged.write_text(json.dumps(suite, indent=2, default=str) + "\n")
    staged.replace(suite_dir / SUITE_FILE)  # atomic: a crash leaves the old record, never half of one
    return suite_dir


@contextmanager
def _one_ray_connection(configs: Iterable[ExperimentConfig]) -> Iterator[None]:
    """One Ray cluster (or connection) for every run of a suite, if any run uses Ray."""
    from deca_ray.runtime.cluster import connect, disconnect

    runtime = next((config.runtime for config in configs if config.runtime.backend == "ray"), None)
    connected_here = runtime is not None and connect(runtime)
    try:
        yield
    finally:
        disconnect(connected_here)


def _supersede(suite_dir: Path, run: str) -> None:
    """Keep the result being replaced, beside the suite, for the record."""
    old = suite_dir / f"{run}.json"
    if old.exists():
        target = suite_dir / "superseded" / f"{run}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
        target.parent.mkdir(exist_ok=True)
        old.rename(target)


def run_config(preset: QualityPreset, run: QualityRun, output_dir: Path) -> ExperimentConfig:
    raw = copy.deepcopy(preset.base)
    merge_overrides(raw, copy.deepcopy(run.overrides))
    name = f"{raw.get('name', 'quality')}-{run.name}"
    # A benchmark compares numbers: no ~540 MB model directory written and logged per run.
    tracking = {"output_dir": str(output_dir), "save_model": False, "log_model": False}
    merge_overrides(raw, {"name": name, "tracking": tracking})
    return config_from_dict(raw)


def _run_one(preset: QualityPreset, run: QualityRun, config: ExperimentConfig) -> dict[str, Any]:
    from deca_ray.runner import run_experiment

    result = run_experiment(config)
    summary = result.summary
    bytes_sent = summary["bytes_sent_per_client"]
    return {
        "metadata": metadata(),
        "preset": preset.name,
        "run": run.name,
        "table": run.table,
        "label": run.label,
        "seed": config.seed,
        "config": config.model_dump(mode="json"),
        "metrics": {
            "before": summary.get("before", {}),
            "after": summary.get("after", {}),
            "steps_per_client": summary["steps"],
            "bytes_sent_per_client": sum(bytes_sent.values()) / len(bytes_sent),
            "peak_tensor_bytes_per_client": summary["peak_tensor_bytes_per_client"],
            "wall_time_s": summary["wall_time_s"],
            "median_step_time_s": summary["median_step_time_s"],
            "num_clients": summary["num_clients"],
        },
        "topology": summary["topology"],
        "curves": {
            "step": [m.position.global_step for m in result.history],
            "mean_loss": [m.mean_loss for m in result.history],
            "consensus_distance": [m.consensus_distance for m in result.history],
        },
        "mlflow": {"tracking_uri": result.tracking_uri, "run_id": result.run_id},
        "run_dir": str(result.run_dir),
    }


def load_suite(suite_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The suite record and its runs' results, in run order."""
    suite = json.loads((suite_dir / SUITE_FILE).read_text())
    return suite, [json.loads((suite_dir / f"{name}.json").read_text()) for name in suite["runs"]]


def newest_suite(results_dir: Path) -> Path:
    suites = sorted(path.parent for path in results_dir.glob(f"quality-*/{SUITE_FILE}"))
    if not suites:
        raise NoResultError(f"no quality-*/{SUITE_FILE} in {results_dir}; run `python -m benchmarks quality` first")
    return suites[-1]


def _new_suite_dir(results_dir: Path) -> Path:
    path = results_dir / f"quality-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def _write(path: Path, payload: dict[str, Any]) -> None:
    with path.open("x") as stream:
        json.dump(payload, stream, indent=2, default=str)
        stream.write("\n")

