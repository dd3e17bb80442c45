"""Matmul FLOPs of one training step, counted from the model's shapes and the batch's real tokens.

A multiply-add is 2 FLOPs. Counted, per decoder layer and sequence of n real (unpadded) tokens,
hidden d, intermediate f, h query heads of size d_h and kv heads of width d_kv = h_kv·d_h:

- projections: q and o 2·n·d·d each, k and v 2·n·d·d_kv each; MLP gate and up 2·n·d·f each,
  down 2·n·f·d;
- attention, causal (query i reads keys 1..i, n(n+1)/2 pairs per head): scores Q·Kᵀ and the
  weighted sum P·V, 2·h·d_h·n(n+1)/2 each;
- the LM head, 2·d·V per position it is applied to: the labelled positions (answer-only loss)
  or every real token (``model(labels=...)``).

Backward, through the layers gradients flow through (from the lowest trained layer L up) and
the head: the activation gradients cost the forward's FLOPs once for each projection and the
head (dX = dY·Wᵀ) and twice for the attention products (both operands are activations); the
weight gradients (dW = Xᵀ·dY, the forward's FLOPs once more) only for the projections of
trained layers, and for the head only when it trains. Layers below L run forward only (none
with a warm frozen prefix, which starts at L).

Not counted: norms, rotary embedding, softmax, SiLU, residual adds, the cross-entropy, the
optimizer (elementwise, a few FLOPs per element against the projections' O(d) per token),
and what the kernels compute beyond the useful work: padding to the batch's longest
sequence and the masked upper triangle of the attention scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from deca_ray.data.batching import IGNORE_INDEX

HeadPositions = Literal["labelled", "all"]


@dataclass(frozen=True)
class ModelShape:
    """What the count needs of a decoder-only transformer's configuration."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> ModelShape:
        """From a Hugging Face causal LM (its ``config``; the vocabulary from the head's weight)."""
        config: Any = model.config
        vocab = model.get_output_embeddings().weight.shape[0]  # type: ignore[operator]
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size,
                   config.num_attention_heads, config.num_key_value_heads, int(vocab))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_width(self) -> int:
        return self.num_kv_heads * self.head_dim

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchShape:
    """The real tokens of one batch: each sequence's unpadded length, and the labelled positions."""

    lengths: tuple[int, ...]
    labelled: int
    padded_width: int

    @classmethod
    def of(cls, batch: dict[str, torch.Tensor]) -> BatchShape:
        """From a collated batch: lengths from the attention mask, labelled = next tokens the loss reads."""
        lengths = tuple(int(n) for n in batch["attention_mask"].sum(dim=1))
        labelled = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        return cls(lengths, labelled, int(batch["input_ids"].shape[1]))

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    @property
    def padded_tokens(self) -> int:
        return len(self.lengths) * self.padded_width


@dataclass(frozen=True)
class StepPlan:
    """What one step computes: which layers run forward, which pass gradients, which train."""

    first_forward_layer: int
    """0, or L when a warm frozen prefix replaces the layers below L."""
    lowest_grad_layer: int
    """L, the lowest trained layer: gradients flow through layers L..top and the head."""
    trained_layers: frozenset[int]
    head_positions: HeadPositions = "labelled"
    head_trained: bool = False

    def __post_init__(self) -> None:
        if not self.first_forward_layer <= self.lowest_grad_layer:
            raise ValueError("the forward must start at or below the lowest layer gradients flow through")
        if any(layer < self.lowest_grad_layer for layer in self.trained_layers):
            raise ValueError("a trained layer lies below lowest_grad_layer; set it to the lowest trained layer")


def projection_flops_per_token(shape: ModelShape) -> dict[str, int]:
    """One layer's linear maps, FLOPs per token, by projection."""
    d, f, kv = shape.hidden_size, shape.intermediate_size, shape.kv_width
    return {"q": 2 * d * d, "k": 2 * d * kv, "v": 2 * d * kv, "o": 2 * d * d,
            "gate": 2 * d * f, "up": 2 * d * f, "down": 2 * f * d}


def attention_flops(shape: ModelShape, length: int) -> int:
    """Causal scores Q·Kᵀ plus the weighted sum P·V of one layer over one sequence: 2 × 2·h·d_h·n(n+1)/2."""
    return 2 * shape.num_heads * shape.head_dim * length * (length + 1)


def layer_flops(shape: ModelShape, batch: BatchShape) -> tuple[int, int]:
    """(projections, attention) FLOPs of one layer's forward over the batch's real tokens."""
    projections = sum(projection_flops_per_token(shape).values()) * batch.tokens
    attention = sum(attention_flops(shape, length) for length in batch.lengths)
    return projections, attention


def step_flops(shape: ModelShape, batch: BatchShape, plan: StepPlan) -> dict[str, int]:
    """Counted FLOPs of one step by phase: forward below L, forward of layers L..top, head, backward."""
    projections, attention = layer_flops(shape, batch)
    head_tokens = batch.labelled if plan.head_positions == "labelled" else batch.tokens
    head = 2 * head_tokens * shape.hidden_size * shape.vocab_size
    grad_layers = shape.num_layers - plan.lowest_grad_layer
    weight_grads = len(plan.trained_layers) * projections + (head if plan.head_trained else 0)
    return {
        "forward_below": (plan.lowest_grad_layer - plan.first_forward_layer) * (projections + attention),
        "forward_layers": grad_layers * (projections + attention),
        "forward_head": head,
        "backward_activations": grad_layers * (projections + 2 * attention) + head,
        "backward_weights": weight_grads,
    }


def total_flops(by_phase: dict[str, int]) -> int:
    return sum(by_phase.values())


def plan_for(trained_layers: Sequence[int], prefix_warm: bool, head_positions: HeadPositions = "labelled") -> StepPlan:
    """The plan of a step training whole decoder layers (a block) with a frozen, tied head."""
    lowest = min(trained_layers)
    return StepPlan(lowest if prefix_warm else 0, lowest, frozenset(trained_layers), head_positions)
