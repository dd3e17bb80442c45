"""Held-out split and client partitions: stratified, seeded, non-empty, as skewed as asked."""

from __future__ import annotations

import numpy as np
import pytest

from deca_ray.config import PartitionConfig
from deca_ray.data.partition import (
    dirichlet_partition,
    field_partition,
    format_partition_report,
    iid_partition,
    partition,
    partition_report,
    shard_partition,
)
from deca_ray.data.split import allocate, stratified_sample, stratified_split
from deca_ray.errors import ConfigError

# 1,000 examples over 5 unbalanced labels (400, 250, 200, 100, 50), in label order like BBC's files.
LABELS = np.repeat(np.arange(5), [400, 250, 200, 100, 50])


def _covers_pool_once(parts: list[list[int]], size: int) -> bool:
    flat = [index for part in parts for index in part]
    return sorted(flat) == list(range(size))


def _label_skew(parts: list[list[int]], labels: np.ndarray) -> float:
    """Mean over clients of the largest label's share: 1/num_labels-ish when IID, 1 when single-label."""
    return float(np.mean([np.bincount(labels[part]).max() / len(part) for part in parts]))


# --------------------------------------------------------------------------- held-out split


def test_split_is_stratified_disjoint_and_complete() -> None:
    train, test = stratified_split(LABELS, 100, seed=0)

    assert len(test) == 100 and len(train) == 900
    assert sorted([*train, *test]) == list(range(1000))
    assert np.bincount(LABELS[test]).tolist() == [40, 25, 20, 10, 5]


def test_split_is_deterministic_by_seed() -> None:
    first, second, other = (stratified_split(LABELS, 0.1, seed) for seed in (3, 3, 4))

    assert np.array_equal(first[1], second[1]) and np.array_equal(first[0], second[0])
    assert not np.array_equal(np.sort(first[1]), np.sort(other[1]))


def test_split_keeps_a_training_example_of_every_label() -> None:
    labels = np.array([0] * 10 + [1] * 2 + [2])

    train, test = stratified_split(labels, 10, seed=0)

    assert np.bincount(labels[train]).tolist() == [1, 1, 1]
    assert len(test) == 10


def test_split_prefixes_are_stratified() -> None:
    _, test = stratified_split(LABELS, 200, seed=1)

    assert np.bincount(LABELS[test[:20]], minlength=5).tolist() == [8, 5, 4, 2, 1]


def test_split_too_large_says_to_lower_test_size() -> None:
    with pytest.raises(ConfigError, match=r"lower data.test_size to at most 995"):
        stratified_split(LABELS, 996, seed=0)


def test_stratified_sample_keeps_proportions() -> None:
    sample = stratified_sample(LABELS, 100, seed=[0, 1])

    assert np.bincount(LABELS[sample]).tolist() == [40, 25, 20, 10, 5]
    assert np.array_equal(sample, stratified_sample(LABELS, 100, seed=[0, 1]))


def test_allocate_uses_largest_remainders_within_capacity() -> None:
    assert allocate(np.array([5, 3, 1]), 4, np.array([4, 2, 0])).tolist() == [2, 2, 0]


# --------------------------------------------------------------------------- partitions


def test_dirichlet_is_deterministic_by_seed() -> None:
    first, second, other = (dirichlet_partition(LABELS, 8, 0.5, seed) for seed in (7, 7, 8))

    assert first == second
    assert first != other


def test_dirichlet_covers_the_pool_and_respects_min_per_client() -> None:
    parts = dirichlet_partition(LABELS, 8, 0.1, seed=0, min_per_client=5)

    assert _covers_pool_once(parts, len(LABELS))
    assert min(len(part) for part in parts) >= 5


def test_dirichlet_skew_grows_as_alpha_falls() -> None:
    skews = [
        np.mean([_label_skew(dirichlet_partition(LABELS, 8, alpha, seed), LABELS) for seed in range(5)])
        for alpha in (100.0, 1.0, 0.1)
    ]

    assert skews[0] < 0.5 and skews[2] > 0.8
    assert skews[0] < skews[1] < skews[2]


def test_dirichlet_gives_up_with_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"partition.min_per_client=3 .* raise partition.alpha, lower num_clients"):
        dirichlet_partition(np.zeros(10, dtype=int), 4, 1.0, seed=0, min_per_client=3, max_resamples=5)


def test_iid_is_balanced_in_size_and_labels() -> None:
    parts = iid_partition(len(LABELS), 4, seed=0)

    assert [len(part) for part in parts] == [250] * 4
    assert _covers_pool_once(parts, len(LABELS))
    shares = np.array([np.bincount(LABELS[part], minlength=5) / len(part) for part in parts])
    assert np.abs(shares - np.bincount(LABELS) / len(LABELS)).max() < 0.1


def test_shards_give_each_client_at_most_k_labels() -> None:
    parts = shard_partition(LABELS, 6, shards_per_client=2, seed=0)

    assert _covers_pool_once(parts, len(LABELS))
    assert all(1 <= len(set(LABELS[part])) <= 2 for part in parts)
    assert parts == shard_partition(LABELS, 6, shards_per_client=2, seed=0)


def test_too_few_shards_for_the_labels_says_what_to_raise() -> None:
    with pytest.raises(ConfigError, match=r"raise partition.shards_per_client"):
        shard_partition(LABELS, 2, shards_per_client=2, seed=0)


def test_by_field_gives_one_client_per_value() -> None:
    values = ["b", "a", "c", "a", "b", "c", "a"]

    parts = field_partition(values, 3)

    assert parts == [[1, 3, 6], [0, 4], [2, 5]]


def test_by_field_groups_extra_values_balanced_and_whole() -> None:
    values = [name for name, count in zip("abcdef", [6, 5, 4, 3, 2, 2], strict=True) for _ in range(count)]

    parts = field_partition(values, 3)

    # Largest value first onto the smallest client: a→0, b→1, c→2, d→2, e→1, f→0.
    owners = {value: client for client, part in enumerate(parts) for value in {values[i] for i in part}}
    assert owners == {"a": 0, "b": 1, "c": 2, "d": 2, "e": 1, "f": 0}
    assert [len(part) for part in parts] == [8, 7, 7]
    assert parts == field_partition(values, 3)


def test_by_field_with_too_few_values_says_to_lower_num_clients() -> None:
    with pytest.raises(ConfigError, match=r"2 distinct values .* lower num_clients to at most 2"):
        field_partition(["x", "y", "x"], 3)


def test_more_clients_than_examples_names_both() -> None:
    with pytest.raises(ConfigError, match=r"num_clients=5 exceeds the 4 training examples"):
        partition(np.zeros(4, dtype=int), 5, PartitionConfig(type="iid"), seed=0)


@pytest.mark.parametrize("kind", ["dirichlet", "iid", "shards", "by_field"])
def test_partition_dispatches_every_type(kind: str) -> None:
    parts = partition(LABELS, 5, PartitionConfig(type=kind), seed=0)

    assert len(parts) == 5 and _covers_pool_once(parts, len(LABELS))


def test_partition_report_counts_clients_by_label() -> None:
    labels = np.array([0, 0, 1, 2, 2, 2])

    report = partition_report(labels, [[0, 2], [1, 3, 4, 5]], ["a", "b", "c"])

    assert report == {"labels": ["a", "b", "c"], "counts": [[1, 1, 0], [1, 0, 3]], "sizes": [2, 4]}
    assert format_partition_report(report).splitlines() == [
        "client  a  b  c  total",
        "     0  1  1  0      2",
        "     1  1  0  3      4",
    ]
