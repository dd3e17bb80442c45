"""Which (run, seed, lr) each phase of the suite measures, and the learning rate the grid chose.

- ``grid``: every method at every rate of its family's grid, on the grid seed; x̄ is scored on the
  validation split (to choose) and the test split (so the chosen rate's run is that seed's run).
- ``seeds``: every method at its chosen rate on the other seeds; refused while its grid is incomplete.
- ``ablations``: every DECA variant at the reference's (DECA's) chosen rate on every seed, not re-tuned.

The choice: the highest validation accuracy of x̄, ties broken by validation macro-F1, then by
the smaller rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.quality.presets import ABLATIONS, GRID, METHODS, SEEDS, QualityPreset, QualityRun
from benchmarks.quality.suite_dir import result_name
from deca_ray.errors import ConfigError

Results = Mapping[str, Mapping[str, Any]]
"""Result files of a suite by file name (``suite_dir.read_results``)."""


@dataclass(frozen=True)
class Job:
    run: QualityRun
    seed: int
    lr: float
    phase: str

    @property
    def file(self) -> str:
        return result_name(self.run.name, self.seed, self.lr)


@dataclass(frozen=True)
class GridPoint:
    lr: float
    accuracy: float
    macro_f1: float


def grid_points(preset: QualityPreset, run: QualityRun, results: Results) -> tuple[list[GridPoint], list[str]]:
    """The validation scores of x̄ at each measured rate of ``run``'s grid, and the files still missing."""
    points, missing = [], []
    for lr in preset.grids[run.family or ""]:
        name = result_name(run.name, preset.grid_seed, lr)
        if name in results and "validation" in results[name]["scores"]["average"]:
            scores = results[name]["scores"]["average"]["validation"]
            points.append(GridPoint(lr, scores["accuracy"], scores["macro_f1"]))
        else:
            missing.append(name)
    return points, missing


def chosen_lr(preset: QualityPreset, run: QualityRun, results: Results) -> float:
    """The grid's choice for method ``run``; ConfigError naming the missing grid results if it is incomplete."""
    points, missing = grid_points(preset, run, results)
    if missing:
        raise ConfigError(f"the lr grid of {run.name} is incomplete ({', '.join(missing)} missing), so its lr is not "
                          f"chosen yet; run `python -m benchmarks quality --phase grid --only {run.name} --into "
                          "SUITE_DIR` first")
    return max(points, key=lambda point: (point.accuracy, point.macro_f1)).lr  # max keeps the first: the smaller lr


def phase_jobs(preset: QualityPreset, phase: str, runs: Sequence[QualityRun], results: Results) -> list[Job]:
    """The jobs of ``phase`` for ``runs`` (the preset's runs of that phase's table among them)."""
    if phase == GRID:
        return [Job(run, preset.grid_seed, lr, GRID) for run in runs if run.table == METHODS
                for lr in preset.grids[run.family or ""]]
    other_seeds = [seed for seed in preset.seeds if seed != preset.grid_seed]
    if phase == SEEDS:
        methods = [run for run in runs if run.table == METHODS]
        chosen = {run.name: chosen_lr(preset, run, results) for run in methods}  # refuses before anything runs
        return [Job(run, seed, chosen[run.name], SEEDS) for run in methods for seed in other_seeds]
    if phase == ABLATIONS:
        ablations = [run for run in runs if run.table == ABLATIONS]
        if not ablations:
            return []
        lr = chosen_lr(preset, preset.run(preset.reference), results)
        return [Job(run, seed, lr, ABLATIONS) for run in ablations for seed in preset.seeds]
    raise ValueError(f"unknown phase {phase!r}")


def final_results(preset: QualityPreset, run: QualityRun, results: Results) -> dict[int, Mapping[str, Any]]:
    """Per seed, the result the report uses for ``run``: at its chosen lr (a method) or at the reference's (an
    ablation); empty while that lr is not chosen."""
    reference = run if run.table == METHODS else preset.run(preset.reference)
    try:
        lr = chosen_lr(preset, reference, results)
    except ConfigError:
        return {}
    return {seed: results[name] for seed in preset.seeds if (name := result_name(run.name, seed, lr)) in results}
