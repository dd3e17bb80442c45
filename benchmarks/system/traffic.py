"""Section c: bytes a client sends per round, DECA against full-model gossip (pure arithmetic).

DECA's bytes are what the driver accounts per step (``StepMetrics.bytes_sent``: the active
block's bytes once per neighbour that mixes it in). Full-model gossip sends every trainable
parameter to every out-neighbour at every step of the same round. The expected ratio is the
active block's share of the trainable model, averaged over the round's steps: exactly 1/B
when a round visits each of the B blocks once with the same number of steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

from benchmarks.system.timing import ratio_entry
from deca_ray.schedule import StepMetrics


def traffic_section(
    history: Sequence[StepMetrics], block_bytes: Sequence[int], out_degrees: Mapping[int, int],
    model_bytes: int,
) -> dict:
    """Per-client DECA ÷ full-gossip bytes over one round; ``history`` is exactly that round."""
    trainable_bytes = sum(block_bytes)
    steps = len(history)
    deca = per_client_bytes(history)
    full = {client: trainable_bytes * out_degrees[client] * steps for client in deca}
    ratios = {client: Fraction(deca[client], full[client]) for client in deca}
    expected = Fraction(sum(block_bytes[m.position.block_index] for m in history), steps * trainable_bytes)
    exact = all(ratio == expected for ratio in ratios.values())
    worst = max(ratios.values(), key=lambda ratio: abs(ratio - expected))
    entry = ratio_entry(
        "bytes per client per round, DECA ÷ full-model gossip", float(worst), float(expected), "==",
        expected_fraction=str(expected), exact_for_every_client=exact,
        num_blocks=len(block_bytes), steps_in_round=steps, block_bytes=list(block_bytes),
        trainable_bytes=trainable_bytes, model_bytes=model_bytes,
        deca_bytes_per_client=_by_client(deca), full_gossip_bytes_per_client=_by_client(full),
        out_degree_per_client=_by_client(out_degrees),
        deca_bytes_per_step_by_block=_bytes_per_step_by_block(history),
        ratio_against_whole_model=float(Fraction(sum(deca.values()), sum(full.values())) *
                                        Fraction(trainable_bytes, model_bytes)),
        source="StepMetrics.bytes_sent from the Ray driver (block bytes × neighbours that mix the block)",
    )
    entry["met"] = exact  # exact rational comparison, not float
    return entry


def per_client_bytes(history: Sequence[StepMetrics]) -> dict[int, int]:
    totals: dict[int, int] = {}
    for metrics in history:
        for client, sent in zip(metrics.clients, metrics.bytes_sent, strict=True):
            totals[client] = totals.get(client, 0) + sent
    return totals


def _bytes_per_step_by_block(history: Sequence[StepMetrics]) -> dict[str, int]:
    """Bytes the first listed client sent in one step of each block (the per-inner-step view)."""
    return {str(m.position.block_index): m.bytes_sent[0] for m in history}


def _by_client(values: Mapping[int, int]) -> dict[str, int]:
    return {str(client): value for client, value in sorted(values.items())}
