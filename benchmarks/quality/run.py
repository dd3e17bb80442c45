"""``python -m benchmarks quality``: the suite's phases, in parts, resumable; one result file per (run, seed, lr).

A new suite goes to ``<results_dir>/quality-<time>/``; ``into`` continues an existing one, skipping
every result already there (a crash or a stop loses at most the job in progress), or with
``rerun`` measures the selected jobs again, moving the results they replace to ``superseded/``.
Each invocation is a session of ``suite.json`` (its wall time, commit and what it measured),
rewritten after every job. Runs go one after another in this process (the presets' local backend;
a preset on Ray shares one cluster).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.quality.held_out import HeldOutCache
from benchmarks.quality.measure import job_config, measure, x0_record
from benchmarks.quality.plan import Job, phase_jobs
from benchmarks.quality.presets import PHASES, QualityPreset
from benchmarks.quality.suite_dir import (
    SUITE_FILE,
    load_suite,
    new_suite,
    newest_suite,
    open_suite,
    read_results,
    supersede,
    write_json,
    x0_name,
)
from benchmarks.results import git_info
from deca_ray.config import ExperimentConfig

__all__ = ["SUITE_FILE", "load_suite", "newest_suite", "run_quality_benchmark"]  # the BENCHMARKS.md test reads these

logger = logging.getLogger(__name__)


def run_quality_benchmark(
    preset: QualityPreset, results_dir: Path, output_dir: Path = Path("runs/bench-quality"),
    phases: Sequence[str] = PHASES, only: Iterable[str] | None = None, into: Path | None = None, rerun: bool = False,
) -> Path:
    """Measure ``phases`` (in the suite's order) for the runs named in ``only`` (default all); returns the suite."""
    selected = set(only) if only is not None else None
    runs = [run for run in preset.runs if selected is None or run.name in selected]
    # bad overrides fail before anything is measured (the lr is not chosen yet: any valid one checks the rest)
    configs = [job_config(preset, Job(run, preset.grid_seed, 1e-4, "check"), output_dir) for run in runs]
    suite_dir = into if into is not None else new_suite(results_dir, preset.name, preset.design())
    session = _Session(suite_dir, open_suite(suite_dir, preset.name, preset.design()), phases, selected, rerun)
    held_out = HeldOutCache(output_dir / "x0-states", preset.score_from_layer)
    try:
        with _one_ray_connection(configs):
            for phase in [phase for phase in PHASES if phase in phases]:
                jobs = phase_jobs(preset, phase, runs, read_results(suite_dir))  # refuses an incomplete grid here
                for job in jobs:
                    if (suite_dir / job.file).exists() and not rerun:
                        logger.info("quality %s: %s already measured, skipped", phase, job.file)
                        continue
                    _measure_into(suite_dir, preset, job, output_dir, held_out, session)
    except BaseException:
        if into is None and not session.entry["measured"]:
            shutil.rmtree(suite_dir)  # a refused or failed start leaves no empty suite to be rendered as the newest
        raise
    session.close()
    return suite_dir


def _measure_into(suite_dir: Path, preset: QualityPreset, job: Job, output_dir: Path, held_out: HeldOutCache,
                  session: _Session) -> None:
    logger.info("quality %s: %s (%s), seed %d, lr %g", job.phase, job.run.name, job.run.label, job.seed, job.lr)
    config = job_config(preset, job, output_dir)
    held = held_out.get(config)
    if not (suite_dir / x0_name(job.seed)).exists():
        write_json(suite_dir / x0_name(job.seed), x0_record(preset, job.seed, held, config))
    result = measure(preset, job, config, held)
    replaced = supersede(suite_dir, job.file)
    write_json(suite_dir / job.file, result)
    session.measured(job.file, result, replaced)


class _Session:
    """This invocation's entry in ``suite.json``: what it asked for and measured, and its wall time so far."""

    def __init__(self, suite_dir: Path, suite: dict[str, Any], phases: Sequence[str], only: set[str] | None,
                 rerun: bool) -> None:
        self.path, self.suite, self.started = suite_dir / SUITE_FILE, suite, time.perf_counter()
        git = git_info()
        self.entry: dict[str, Any] = {
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git.get("commit"),
            "dirty": git.get("dirty"), "phases": list(phases), "only": sorted(only) if only else None,
            "rerun": rerun, "measured": [], "wall_time_s": 0.0,
        }
        suite["sessions"].append(self.entry)
        self._write()

    def measured(self, name: str, result: dict[str, Any], replaced: Path | None) -> None:
        self.entry["measured"].append(name)
        if replaced is not None:
            self.suite["reruns"].append({"file": name, "commit": result["metadata"]["git"]["commit"],
                                         "date_utc": result["metadata"]["date_utc"], "superseded": replaced.name})
        self._write()

    def close(self) -> None:
        self._write()

    def _write(self) -> None:
        self.entry["wall_time_s"] = time.perf_counter() - self.started
        write_json(self.path, self.suite)


@contextmanager
def _one_ray_connection(configs: Iterable[ExperimentConfig]) -> Iterator[None]:
    """One Ray cluster (or connection) for every run of a suite, if any run uses Ray."""
    runtime = next((config.runtime for config in configs if config.runtime.backend == "ray"), None)
    if runtime is None:
        yield
        return
    from deca_ray.runtime.cluster import connect, disconnect

    connected_here = connect(runtime)
    try:
        yield
    finally:
        disconnect(connected_here)

