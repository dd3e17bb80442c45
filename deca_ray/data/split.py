"""Stratified, seeded selections of example indices: the held-out split and training subsamples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deca_ray.errors import ConfigError

Seed = int | Sequence[int]
"""Anything ``np.random.default_rng`` accepts as entropy; lists derive independent streams."""


def allocate(counts: np.ndarray, total: int, capacity: np.ndarray) -> np.ndarray:
    """Split ``total`` over groups in proportion to ``counts`` (largest remainder), capped by ``capacity``."""
    counts, capacity = np.asarray(counts), np.asarray(capacity)
    if total > capacity.sum():
        raise ValueError(f"cannot place {total} items in groups holding {capacity.sum()}")
    ideal = total * counts / counts.sum()
    quota = np.minimum(np.floor(ideal).astype(int), capacity)
    while (missing := total - quota.sum()) > 0:
        # Largest remainders first among groups with room; stable sort keeps ties in label order.
        remainder = np.where(quota < capacity, ideal - quota, -np.inf)
        chosen = np.argsort(-remainder, kind="stable")[:missing]
        quota[chosen[quota[chosen] < capacity[chosen]]] += 1
    return quota


def stratified_split(labels: Sequence[int] | np.ndarray, test_size: int | float, seed: Seed) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: the test share of every label ∝ its frequency, seeded.

    ``test_size`` is a count (int) or a fraction (float). Every label keeps at least one
    training example (a label seen once is never held out). Train comes back sorted; test comes back in
    *stratified order* (see :func:`stratified_order`), so any prefix of it is itself stratified.
    """
    labels = np.asarray(labels)
    num_test = test_size if isinstance(test_size, int) else max(1, round(test_size * len(labels)))
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    capacity = counts - 1  # a label keeps at least one training example
    if num_test > capacity.sum():
        raise ConfigError(
            f"data.test_size={test_size} holds out {num_test} of {len(labels)} examples and would leave a "
            f"label without training data; lower data.test_size to at most {capacity.sum()}"
        )
    picks = _pick(inverse, allocate(counts, num_test, capacity), np.random.default_rng(seed))
    test = stratified_order(picks)
    return np.setdiff1d(np.arange(len(labels)), test), test


def stratified_sample(labels: Sequence[int] | np.ndarray, size: int, seed: Seed) -> np.ndarray:
    """Sorted indices of a seeded subsample of ``size`` examples with the labels' proportions."""
    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    picks = _pick(inverse, allocate(counts, size, counts), np.random.default_rng(seed))
    return np.sort(np.concatenate(picks))


def stratified_order(groups: list[np.ndarray]) -> np.ndarray:
    """Interleave per-label index lists so that every prefix keeps the labels' proportions.

    The r-th of a label's n items sits at position (r + 0.5) / n of the merged order.
    """
    keys = np.concatenate([(np.arange(len(group)) + 0.5) / len(group) for group in groups if len(group)])
    order = np.argsort(keys, kind="stable")
    return np.concatenate(groups)[order]


def _pick(inverse: np.ndarray, quota: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """quota[g] random members of each group g, in random order."""
    return [rng.permutation(np.flatnonzero(inverse == group))[:take] for group, take in enumerate(quota)]
