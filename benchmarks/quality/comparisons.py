"""What the quality report states, computed from a suite's result files: means over seeds, paired intervals, the goal.

A run's numbers come from its results at its final lr (``plan.final_results``): one per seed. A
difference to the reference (DECA) pairs the two runs seed by seed on the same test examples (the
result files' held-out digests must agree) and carries a hierarchical bootstrap interval
(``benchmarks.statistics.paired_bootstrap``). An interval that contains 0 is reported as no difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchmarks.quality.plan import Results, final_results
from benchmarks.quality.presets import QualityPreset, QualityRun
from benchmarks.statistics import Estimate, Interval, Metric, PairedSeed, paired_bootstrap

ADAPTER_BASELINES = ("dec_lora", "decaf", "dec_adapter")
"""The goal's parameter-efficient rivals (the paper's baselines)."""
WITHOUT_BMA = "ablation-without_bma"
GOAL = ("DECA with its chosen defaults ≥ the best of Dec-LoRA / DeCAF / Dec-Adapter, and full BMA ≥ without BMA, "
        "each with the paired 95% interval above 0")
FINAL_LOSS_STEPS = 5
"""A run's final training loss: the mean of this many last steps (one step's batch loss is noisy)."""


@dataclass(frozen=True)
class RunResults:
    """One run's results at its final lr, by seed."""

    run: QualityRun
    per_seed: Mapping[int, Mapping[str, Any]]

    @property
    def lr(self) -> float | None:
        return next(iter(self.per_seed.values()))["lr"] if self.per_seed else None

    def estimate(self, quantity: str) -> Estimate | None:
        """Mean ± SE (and std) over seeds of ``quantity``: a key of ``QUANTITIES``."""
        values = [QUANTITIES[quantity](result) for result in self.per_seed.values()]
        present = [value for value in values if value is not None]
        return Estimate.of(present) if present else None


def _clients(metric: str) -> Any:
    def mean_over_clients(result: Mapping[str, Any]) -> float | None:
        clients = result["scores"]["clients"]
        return sum(client[metric] for client in clients) / len(clients) if clients else None
    return mean_over_clients


def _final_loss(result: Mapping[str, Any]) -> float:
    tail = result["curves"]["mean_loss"][-FINAL_LOSS_STEPS:]
    return sum(tail) / len(tail)


def _consensus(result: Mapping[str, Any]) -> float | None:
    measured = [value for value in result["curves"]["consensus_distance"] if value is not None]
    return sum(measured) / len(measured) if measured else None


QUANTITIES = {
    "accuracy": lambda result: result["scores"]["average"]["test"]["accuracy"],
    "macro_f1": lambda result: result["scores"]["average"]["test"]["macro_f1"],
    "clients_accuracy": _clients("accuracy"),
    "clients_macro_f1": _clients("macro_f1"),
    "bytes_sent": lambda result: result["training"]["bytes_sent_per_client"],
    "tensor_bytes": lambda result: result["training"]["peak_tensor_bytes_per_client"],
    "train_s": lambda result: result["timing"]["train_s"],
    "score_s": lambda result: result["timing"]["score_s"],
    "final_loss": _final_loss,
    "consensus": _consensus,
}


def run_results(preset: QualityPreset, results: Results) -> dict[str, RunResults]:
    return {run.name: RunResults(run, final_results(preset, run, results)) for run in preset.runs}


def paired_difference(ours: RunResults, theirs: RunResults, metric: Metric, replicates: int) -> Interval | None:
    """ours − theirs on the test split of the seeds both have; None when they share no seed."""
    seeds = sorted(set(ours.per_seed) & set(theirs.per_seed))
    if not seeds:
        return None
    paired = []
    for seed in seeds:
        mine, other = ours.per_seed[seed], theirs.per_seed[seed]
        if mine["held_out"]["digest"] != other["held_out"]["digest"]:
            raise ValueError(f"{mine['run']} and {other['run']} were scored on different held-out sets at seed {seed}; "
                             "their predictions do not pair")
        paired.append(PairedSeed.of(mine["scores"]["average"]["test"]["predictions"],
                                    other["scores"]["average"]["test"]["predictions"],
                                    mine["held_out"]["labels"]["test"]))
    return paired_bootstrap(paired, metric, replicates)


@dataclass(frozen=True)
class Goal:
    verdict: str
    """``met``, ``not met``, ``undecided`` or ``not measured yet``."""
    rival: str | None
    """Label of the best parameter-efficient baseline (highest mean test accuracy of x̄)."""
    against_rival: Interval | None
    against_without_bma: Interval | None


def goal(preset: QualityPreset, runs: Mapping[str, RunResults]) -> Goal:
    """Each interval (DECA − other, accuracy of x̄): above 0 holds, below 0 fails, else undecided."""
    reference = runs[preset.reference]
    rivals = [runs[name] for name in ADAPTER_BASELINES if name in runs and runs[name].per_seed]
    best = max(rivals, key=lambda rival: _mean(rival.estimate("accuracy")), default=None)
    replicates = preset.bootstrap_replicates
    against_rival = paired_difference(reference, best, "accuracy", replicates) if best is not None else None
    without = runs.get(WITHOUT_BMA)
    against_without = paired_difference(reference, without, "accuracy", replicates) if without is not None else None
    intervals = [against_rival, against_without]
    if any(interval is None for interval in intervals):
        verdict = "not measured yet"
    elif any(interval.high < 0 for interval in intervals if interval is not None):
        verdict = "not met"
    elif all(interval.low > 0 for interval in intervals if interval is not None):
        verdict = "met"
    else:
        verdict = "undecided"
    return Goal(verdict, best.run.label if best is not None else None, against_rival, against_without)


def config_changes(ours: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """``section.key: reference → ours`` for every setting that differs (run names, seeds and bookkeeping aside)."""
    ignored = {"name", "tracking", "checkpoint"}
    changes = []
    for key, (before, after) in _flat_differences(reference, ours, "").items():
        if key.split(".")[0] not in ignored:
            changes.append(f"{key}: {before} → {after}")
    return changes


def _flat_differences(before: Any, after: Any, prefix: str) -> dict[str, tuple[Any, Any]]:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        found: dict[str, tuple[Any, Any]] = {}
        for key in sorted(set(before) | set(after)):
            found |= _flat_differences(before.get(key), after.get(key), f"{prefix}{key}.")
        return found
    return {} if before == after else {prefix.rstrip("."): (before, after)}


def _mean(estimate: Estimate | None) -> float:
    return float("-inf") if estimate is None else estimate.mean
