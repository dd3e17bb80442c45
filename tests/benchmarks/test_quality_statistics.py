"""The quality suite's statistics: macro-F1 as deca_ray computes it, and the hierarchical paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.statistics import Estimate, PairedSeed, metric_values, paired_bootstrap
from deca_ray.evaluate import classification_metrics


def _seed(ours, theirs, labels) -> PairedSeed:
    return PairedSeed.of(ours, theirs, labels)


def test_identical_predictions_differ_by_exactly_zero():
    labels = [0, 1, 2, 3, 4] * 20
    predictions = [0, 1, 1, 3, 0] * 20
    seeds = [_seed(predictions, predictions, labels)] * 3
    for metric in ("accuracy", "macro_f1"):
        interval = paired_bootstrap(seeds, metric, replicates=500)
        assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
        assert interval.verdict == "no difference"


def test_right_on_every_example_where_the_other_is_wrong_is_plus_one():
    labels = np.arange(60) % 5
    wrong = (labels + 1) % 5
    interval = paired_bootstrap([_seed(labels, wrong, labels), _seed(labels, wrong, labels)], replicates=500)
    assert (interval.difference, interval.low, interval.high) == (1.0, 1.0, 1.0)
    assert interval.verdict == "better" and interval.seeds == 2
    reverse = paired_bootstrap([_seed(wrong, labels, labels)], replicates=500)
    assert (reverse.difference, reverse.high, reverse.verdict) == (-1.0, -1.0, "worse")


def _seed_with(right_ours: int, right_theirs: int, rng: np.random.Generator, size: int = 500) -> PairedSeed:
    """``size`` examples; each model is right on a fixed number of them, placed at random."""
    labels = rng.integers(5, size=size)
    ours = np.where(np.isin(np.arange(size), rng.permutation(size)[:right_ours]), labels, (labels + 1) % 5)
    theirs = np.where(np.isin(np.arange(size), rng.permutation(size)[:right_theirs]), labels, (labels + 2) % 5)
    return _seed(ours, theirs, labels)


def test_interval_holds_the_observed_difference_is_reproducible_and_carries_the_seeds_disagreement():
    # Prepare: on 3 seeds of 500 examples, ours is right on 350 and theirs on 300 (+0.1 on each seed)
    rng = np.random.default_rng(0)
    agreeing = [_seed_with(350, 300, rng) for _ in range(3)]
    # Execute
    interval = paired_bootstrap(agreeing, replicates=2000)
    # Assert: +0.1 exactly, an interval around it that excludes 0, the same on a second call (fixed resampling)
    assert interval.difference == pytest.approx(0.1)
    assert 0 < interval.low < interval.difference < interval.high < 0.2 and interval.verdict == "better"
    assert paired_bootstrap(agreeing, replicates=2000) == interval
    # the same mean difference from seeds that disagree (+0.3, +0.1, −0.1): resampling seeds widens the interval
    disagreeing = [_seed_with(400, 250, rng), _seed_with(350, 300, rng), _seed_with(300, 350, rng)]
    wider = paired_bootstrap(disagreeing, replicates=2000)
    assert wider.difference == pytest.approx(0.1)
    assert wider.high - wider.low > 2 * (interval.high - interval.low)


def test_macro_f1_of_each_row_is_deca_rays_classification_metric():
    rng = np.random.default_rng(1)
    labels = rng.integers(5, size=(40, 30))
    predictions = np.where(rng.random((40, 30)) < 0.5, labels, rng.integers(5, size=(40, 30)))
    predictions[0] = 4  # one label predicted for everything: the others' F1 is 0
    for metric in ("accuracy", "macro_f1"):
        expected = [classification_metrics(torch.tensor(p), torch.tensor(lab), 5)[metric]
                    for p, lab in zip(predictions, labels, strict=True)]
        assert metric_values(predictions, labels, metric) == pytest.approx(expected)


def test_paired_predictions_must_cover_the_same_examples():
    with pytest.raises(ValueError, match="same non-empty examples"):
        PairedSeed.of([0, 1], [0], [0, 1])


def test_estimate_keeps_the_standard_deviation_beside_the_standard_error():
    estimate = Estimate.of([0.5, 0.7, 0.6])
    assert estimate.std == pytest.approx(0.1) and estimate.se == pytest.approx(0.1 / 3**0.5)
    assert estimate.spread() == "0.600 ± 0.100"
