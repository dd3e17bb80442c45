"""Gossip mixing of half-stepped blocks and the consensus distance between clients."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def mix(own: torch.Tensor, self_weight: float, neighbours: Sequence[tuple[torch.Tensor, float]]) -> torch.Tensor:
    """Paper Eq. 7 for one client: x_new = w_ii·x½_i + Σ_j w_ij·x½_j (a new tensor).

    Inputs are never modified: neighbours' blocks may be read-only views into Ray's object store.
    """
    mixed = own * self_weight
    for block, weight in neighbours:
        mixed.add_(torch.as_tensor(block), alpha=weight)
    return mixed


def mix_all(mixing_matrix: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """All clients at once: (n, n) W times (n, numel) stacked blocks."""
    return mixing_matrix.to(blocks.dtype) @ blocks


def consensus_distance(blocks: torch.Tensor) -> float:
    """Mean over clients of ‖x_i − x̄‖² for stacked blocks of shape (n, numel)."""
    deviations = blocks - blocks.mean(dim=0, keepdim=True)  # (n, numel), in the blocks' dtype
    # Squares summed in float64: millions of tiny terms lose digits in float32.
    return float(torch.linalg.vector_norm(deviations, dim=1, dtype=torch.float64).square().mean())


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The network-average model x̄ = (1/n)·Σ_i x_i, parameter by parameter."""
    if not states:
        raise ValueError("average_states needs at least one client state")
    return {name: torch.stack([state[name] for state in states]).mean(dim=0) for name in states[0]}
