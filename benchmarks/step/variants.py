"""The training forwards compared side by side on one client: full logits, answer-only head, frozen prefix cold / warm.

- ``full_logits``: ``model(**batch).loss``, the head over every position (the path before issue 13);
- ``answer_only``: ``answer_loss`` from the tokens, the head on the labelled positions only;
- ``prefix_cold``: a frozen prefix met for the first time each step (every example computed alone
  up to layer L, then the batch from L): what a client pays for examples it has not seen before;
- ``prefix_warm``: the client's own forward, its prefix filled beforehand for every batch timed:
  the cost of an example seen before (the steady state of a run that revisits its shard).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from benchmarks.step.flops import HeadPositions
from benchmarks.step.phases import Forward
from deca_ray.client import ClientWorker
from deca_ray.client.forward import FrozenPrefix, TrainingForward

TOP_VARIANTS = ("full_logits", "answer_only", "prefix_cold", "prefix_warm")
BOTTOM_VARIANTS = ("answer_only",)
LABELS = {
    "full_logits": "full logits (`model(**batch).loss`)",
    "answer_only": "answer-only head, no prefix",
    "prefix_cold": "answer-only head, frozen prefix cold",
    "prefix_warm": "answer-only head, frozen prefix warm",
}


class FullLogitsForward:
    """The Hugging Face loss: logits for every position, cross-entropy over the labelled ones."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def loss(self, batch: Mapping[str, torch.Tensor], indices: Sequence[int]) -> torch.Tensor:
        return self.model(**batch, use_cache=False).loss


class ColdPrefixForward:
    """A fresh frozen prefix for every batch: each example's states below layer L computed on the spot."""

    def __init__(self, model: torch.nn.Module, layer: int, shard: Sequence) -> None:
        self.model = model
        self.layer = layer
        self.shard = shard

    def loss(self, batch: Mapping[str, torch.Tensor], indices: Sequence[int]) -> torch.Tensor:
        return TrainingForward(self.model, FrozenPrefix(self.model, self.layer, self.shard)).loss(batch, indices)


def variant_forwards(client: ClientWorker, names: Sequence[str], lowest_trained_layer: int) -> dict[str, Forward]:
    """The forwards ``names`` asks for, on ``client`` (``prefix_*`` need the client's own prefix, i.e. a top block)."""
    prefix = client.forward.prefix
    if prefix is None and any(name.startswith("prefix_") for name in names):
        raise ValueError("prefix variants need a client whose forward has a frozen prefix "
                         "(runtime.frozen_prefix: on, nothing trained below the block)")
    builders: dict[str, Callable[[], Forward]] = {
        "full_logits": lambda: FullLogitsForward(client.model),
        "answer_only": lambda: TrainingForward(client.model, None),
        "prefix_cold": lambda: ColdPrefixForward(client.model, lowest_trained_layer, client.shard),
        "prefix_warm": lambda: client.forward,
    }
    return {name: builders[name]() for name in names}


def head_positions(variant: str) -> HeadPositions:
    return "all" if variant == "full_logits" else "labelled"

