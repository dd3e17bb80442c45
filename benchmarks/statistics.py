"""Statistics the benchmark reports share: means over seeds, and paired bootstrap intervals over seeds and examples.

The lab compares settings by the mean ± standard error of per-seed differences (``Estimate``); the
quality suite, which keeps every held-out prediction, by a hierarchical paired bootstrap
(``paired_bootstrap``): seeds are resampled, then examples within each drawn seed, with the same
indices for both sides, so the interval carries both sources of noise and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Metric = Literal["accuracy", "macro_f1"]
BOOTSTRAP_SEED = 20261206
"""The resampling is fixed: a re-render of the same results gives the same intervals."""


@dataclass(frozen=True)
class Estimate:
    """Mean ± standard error of one quantity over seeds (``std`` is the sample standard deviation)."""

    mean: float
    se: float
    n: int
    std: float = 0.0

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        n = len(values)
        mean = sum(values) / n
        variance = sum((value - mean) ** 2 for value in values) / (n - 1) if n > 1 else 0.0
        return cls(mean, math.sqrt(variance / n), n, math.sqrt(variance))

    def text(self, digits: int = 3, signed: bool = False) -> str:
        sign = "+" if signed else ""
        return f"{self.mean:{sign}.{digits}f} ± {self.se:.{digits}f}"

    def spread(self, digits: int = 3) -> str:
        """Mean ± standard deviation over seeds."""
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"

    @property
    def z(self) -> float:
        """Mean in units of its standard error (inf for an exact, non-zero difference)."""
        if self.se > 0:
            return self.mean / self.se
        return 0.0 if self.mean == 0 else math.copysign(math.inf, self.mean)


@dataclass(frozen=True)
class PairedSeed:
    """One seed's held-out set scored by two models: predicted labels of each, and the true labels."""

    ours: np.ndarray
    theirs: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, ours: Sequence[int], theirs: Sequence[int], labels: Sequence[int]) -> PairedSeed:
        if not len(ours) == len(theirs) == len(labels) > 0:
            raise ValueError(f"paired predictions need the same non-empty examples: {len(ours)}, {len(theirs)}, "
                             f"{len(labels)}")
        return cls(np.asarray(ours), np.asarray(theirs), np.asarray(labels))


@dataclass(frozen=True)
class Interval:
    """A paired difference (ours − theirs, mean over seeds) with its bootstrap percentile interval."""

    difference: float
    low: float
    high: float
    level: float
    replicates: int
    seeds: int

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` when the interval excludes 0, else ``no difference``."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no difference"

    def text(self, digits: int = 3) -> str:
        return f"{self.difference:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def metric_values(predictions: np.ndarray, labels: np.ndarray, metric: Metric) -> np.ndarray:
    """``metric`` of each row of (rows, examples) predictions against labels of the same shape.

    Macro-F1 follows ``deca_ray.evaluate.classification_metrics`` (scikit-learn's convention): the
    average runs over labels present in labels ∪ predictions of the row, F1 = 2TP / (#predicted + #actual).
    """
    if metric == "accuracy":
        return (predictions == labels).mean(axis=1)
    total = np.zeros(len(predictions))
    present = np.zeros(len(predictions))
    for label in np.union1d(np.unique(predictions), np.unique(labels)):
        predicted, actual = predictions == label, labels == label
        counts = predicted.sum(axis=1) + actual.sum(axis=1)
        true_positives = (predicted & actual).sum(axis=1)
        total += np.divide(2 * true_positives, counts, out=np.zeros(len(counts)), where=counts > 0)
        present += counts > 0
    return total / np.maximum(present, 1)


def paired_bootstrap(
    seeds: Sequence[PairedSeed], metric: Metric = "accuracy", replicates: int = 2000, level: float = 0.95,
    rng_seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Hierarchical paired bootstrap of mean over seeds of metric(ours) − metric(theirs).

    Each replicate draws len(seeds) seeds with replacement, and for every draw as many examples as
    that seed has, with replacement; both models are scored on the same drawn examples.
    """
    if not seeds:
        raise ValueError("no seed to compare on")
    observed = float(np.mean([_difference(seed, None, metric)[0] for seed in seeds]))
    rng = np.random.default_rng(rng_seed)
    sums = np.zeros(replicates)
    for _ in seeds:  # one slot of each replicate's seed sample per pass
        drawn = rng.integers(len(seeds), size=replicates)
        for index, seed in enumerate(seeds):
            rows = np.flatnonzero(drawn == index)
            if len(rows):
                examples = rng.integers(len(seed.labels), size=(len(rows), len(seed.labels)))
                sums[rows] += _difference(seed, examples, metric)
    low, high = np.quantile(sums / len(seeds), [(1 - level) / 2, (1 + level) / 2])
    return Interval(observed, float(low), float(high), level, replicates, len(seeds))


def _difference(seed: PairedSeed, examples: np.ndarray | None, metric: Metric) -> np.ndarray:
    """metric(ours) − metric(theirs) per row of example indices (None: all examples once)."""
    if examples is None:
        examples = np.arange(len(seed.labels))[None]
    labels = seed.labels[examples]
    return metric_values(seed.ours[examples], labels, metric) - metric_values(seed.theirs[examples], labels, metric)
