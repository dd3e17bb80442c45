"""Split a training pool across clients (Dirichlet, IID, label shards, by field) and report it.

Every partitioner is a pure, seeded numpy function returning one list of pool indices per
client; the same arguments always give the same partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deca_ray.config import PartitionConfig
from deca_ray.data.split import Seed, allocate
from deca_ray.errors import ConfigError

Parts = list[list[int]]


def partition(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    config: PartitionConfig,
    seed: Seed,
    field_values: Sequence[str] | None = None,
) -> Parts:
    """Dispatch on ``config.type``; ``field_values`` (default: the labels) drive ``by_field``."""
    labels = np.asarray(labels)
    check_pool_size(len(labels), num_clients)
    if config.type == "dirichlet":
        parts = dirichlet_partition(labels, num_clients, config.alpha, seed, config.min_per_client, config.max_resamples)
    elif config.type == "iid":
        parts = iid_partition(len(labels), num_clients, seed)
    elif config.type == "shards":
        parts = shard_partition(labels, num_clients, config.shards_per_client, seed)
    else:
        parts = field_partition([str(v) for v in (labels if field_values is None else field_values)], num_clients)
    check_non_empty(parts, f"partition.type={config.type}")
    return parts


def dirichlet_partition(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    alpha: float,
    seed: Seed,
    min_per_client: int = 1,
    max_resamples: int = 1000,
) -> Parts:
    """Label skew: each label's examples are shared out by proportions p ~ Dir(α·1_K).

    As in NIID-Bench (Li et al., 2022), a client already holding N/K examples gets no share
    of later labels, which keeps sizes within reach of each other. Draws that leave a client
    with fewer than ``min_per_client`` examples are redrawn with derived seeds.
    """
    labels = np.asarray(labels)
    check_pool_size(len(labels), num_clients)
    for attempt in range(max_resamples):
        parts = _dirichlet_draw(labels, num_clients, alpha, np.random.default_rng([*_entropy(seed), attempt]))
        if min(len(part) for part in parts) >= min_per_client:
            return [sorted(part) for part in parts]
    raise ConfigError(
        f"partition.alpha={alpha} left some client with fewer than partition.min_per_client={min_per_client} "
        f"of {len(labels)} examples in {max_resamples} draws; raise partition.alpha, lower num_clients "
        f"({num_clients}) or lower partition.min_per_client"
    )


def iid_partition(num_examples: int, num_clients: int, seed: Seed) -> Parts:
    """A seeded shuffle cut into ``num_clients`` near-equal parts."""
    check_pool_size(num_examples, num_clients)
    order = np.random.default_rng(seed).permutation(num_examples)
    return [sorted(part.tolist()) for part in np.array_split(order, num_clients)]


def shard_partition(labels: Sequence[int] | np.ndarray, num_clients: int, shards_per_client: int, seed: Seed) -> Parts:
    """McMahan et al.'s pathological split: single-label shards, k dealt to each client (≤ k labels each).

    Shards are cut per label (a label's shard count ∝ its size) so no shard mixes labels.
    """
    labels = np.asarray(labels)
    check_pool_size(len(labels), num_clients)
    num_shards = num_clients * shards_per_client
    values, counts = np.unique(labels, return_counts=True)
    if num_shards < len(values):
        raise ConfigError(
            f"num_clients × partition.shards_per_client = {num_shards} shards cannot cover {len(values)} labels; "
            "raise partition.shards_per_client"
        )
    if num_shards > len(labels):
        raise ConfigError(f"{num_shards} shards need at least as many examples (have {len(labels)}); lower partition.shards_per_client")
    # At least one shard per label, the rest ∝ label size; never more shards than examples.
    per_label = 1 + allocate(counts, num_shards - len(values), counts - 1)
    rng = np.random.default_rng(seed)
    shards = [
        chunk
        for value, num in zip(values, per_label, strict=True)
        for chunk in np.array_split(rng.permutation(np.flatnonzero(labels == value)), num)
    ]
    dealt = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [sorted(np.concatenate([shards[s] for s in row]).tolist()) for row in dealt]


def field_partition(values: Sequence[str], num_clients: int) -> Parts:
    """Natural split: one client per distinct value, or several values per client, balanced.

    With more values than clients, values go largest first to the currently smallest client
    (ties: lower value name, lower client index), so the grouping is deterministic.
    """
    names, counts = np.unique(np.asarray(values), return_counts=True)
    if len(names) < num_clients:
        raise ConfigError(
            f"partition.type=by_field found {len(names)} distinct values ({', '.join(names[:10])}) for "
            f"num_clients={num_clients}; lower num_clients to at most {len(names)}"
        )
    sizes = np.zeros(num_clients, dtype=int)
    owner = {}
    for position in np.argsort(-counts, kind="stable"):
        client = int(np.argmin(sizes))
        owner[names[position]], sizes[client] = client, sizes[client] + counts[position]
    parts: Parts = [[] for _ in range(num_clients)]
    for index, value in enumerate(values):
        parts[owner[value]].append(index)
    return parts


def check_pool_size(num_examples: int, num_clients: int) -> None:
    if num_clients > num_examples:
        raise ConfigError(
            f"num_clients={num_clients} exceeds the {num_examples} training examples; lower num_clients "
            "or raise data.max_train_examples / lower data.test_size"
        )


def check_non_empty(parts: Parts, method: str) -> None:
    for client, part in enumerate(parts):
        if not part:
            raise ConfigError(
                f"{method} left client {client} with no training data; raise partition.alpha "
                f"or lower num_clients ({len(parts)})"
            )


def partition_report(labels: Sequence[int] | np.ndarray, parts: Parts, label_names: Sequence[str]) -> dict:
    """Examples per client × label, JSON-friendly: ``{"labels", "counts", "sizes"}``."""
    labels = np.asarray(labels)
    counts = [np.bincount(labels[part], minlength=len(label_names)).tolist() for part in parts]
    return {"labels": list(label_names), "counts": counts, "sizes": [len(part) for part in parts]}


def format_partition_report(report: dict) -> str:
    """The report as a plain-text table: one row per client, one column per label, plus totals."""
    header = ["client", *report["labels"], "total"]
    rows = [[str(client), *map(str, counts), str(size)] for client, (counts, size) in enumerate(zip(report["counts"], report["sizes"], strict=True))]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows])


def _dirichlet_draw(labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator) -> Parts:
    parts: Parts = [[] for _ in range(num_clients)]
    cap = len(labels) / num_clients
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        open_clients = np.array([len(part) < cap for part in parts])
        proportions = np.where(open_clients, proportions, 0.0)
        # A tiny α can underflow every open share to 0: fall back to equal shares among them.
        proportions = proportions / proportions.sum() if proportions.sum() > 0 else open_clients / open_clients.sum()
        cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(members, cuts), strict=True):
            part.extend(chunk.tolist())
    return parts


def _entropy(seed: Seed) -> list[int]:
    return [seed] if isinstance(seed, int) else list(seed)
