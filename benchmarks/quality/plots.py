"""The v2 report's plots, beside the result files: accuracy with error bars, loss curves with seed bands."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # pyplot-free: no backend or global figure state

from benchmarks.quality.comparisons import RunResults, run_results
from benchmarks.quality.plan import Results
from benchmarks.quality.presets import ABLATIONS, METHODS, QualityPreset
from benchmarks.quality.suite_dir import x0_name

PLOTS = ("accuracy.png", "loss_curves.png", "ablation_loss_curves.png")
"""Shared by the plotter and the report's links, so they always agree."""


def draw_quality_plots(preset: QualityPreset, results: Results, suite_dir: Path) -> list[Path]:
    runs = run_results(preset, results)
    methods = [summary for summary in runs.values() if summary.run.table == METHODS]
    ablations = [runs[preset.reference]] + [summary for summary in runs.values() if summary.run.table == ABLATIONS]
    accuracy, losses, ablation_losses = (suite_dir / name for name in PLOTS)
    before = [results[x0_name(seed)]["scores"]["average"]["test"]["accuracy"] for seed in preset.seeds
              if x0_name(seed) in results]
    return [_draw_accuracy(methods, ablations, before, accuracy), _draw_losses(methods, losses),
            _draw_losses(ablations, ablation_losses)]


def _draw_accuracy(methods: list[RunResults], ablations: list[RunResults], before: list[float], path: Path) -> Path:
    figure = Figure(figsize=(12, 4.5))
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [len(methods), max(len(ablations), 1)]})
    _bars(left, methods, ("accuracy", "clients_accuracy"), ("x̄ (network average)", "clients' own models"), before)
    _bars(right, ablations, ("accuracy",), ("x̄",), before)
    left.set_title("methods, at each one's chosen lr")
    right.set_title("DECA and its ablations, at DECA's lr")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def _bars(axes: Axes, runs: list[RunResults], quantities: tuple[str, ...], names: tuple[str, ...],
          before: list[float]) -> None:
    """Mean over seeds ± std as error bars; a missing run or quantity is a NaN bar (left out)."""
    width = 0.8 / len(quantities)
    for offset, (quantity, name) in enumerate(zip(quantities, names, strict=True)):
        estimates = [summary.estimate(quantity) for summary in runs]
        means = [math.nan if found is None else found.mean for found in estimates]
        errors = [0.0 if found is None else found.std for found in estimates]
        positions = [index + (offset - (len(quantities) - 1) / 2) * width for index in range(len(runs))]
        axes.bar(positions, means, width, yerr=errors, capsize=3, label=name)
    if before:
        axes.axhline(float(np.mean(before)), color="grey", linestyle="--", linewidth=1, label="before training (x0)")
    axes.set_xticks(range(len(runs)), [summary.run.label for summary in runs], rotation=35, ha="right", fontsize=7)
    axes.set_ylabel("test accuracy, mean ± std over seeds")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7)


def _draw_losses(runs: list[RunResults], path: Path) -> Path:
    """Per run: the mean over seeds of the clients' mean training loss, with the seeds' min–max as a band."""
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    for summary in runs:
        curves = [result["curves"]["mean_loss"] for result in summary.per_seed.values()]
        if not curves:
            continue
        length = min(len(curve) for curve in curves)
        stacked = np.array([curve[:length] for curve in curves])  # (seeds, steps)
        steps = np.arange(1, length + 1)
        line = axes.plot(steps, stacked.mean(axis=0), linewidth=1.5, label=f"{summary.run.label} ({len(curves)})")
        axes.fill_between(steps, stacked.min(axis=0), stacked.max(axis=0), color=line[0].get_color(), alpha=0.15)
    axes.set_xlabel("inner step")
    axes.set_ylabel("training loss, mean over clients")
    axes.set_title("mean over seeds (number of seeds in brackets); band: min–max over seeds", fontsize=8)
    axes.legend(fontsize=6)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path
