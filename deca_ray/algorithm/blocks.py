"""Cut a causal LM's parameters into DECA blocks by name, and choose the order blocks are visited.

Only names are needed, so the partition can be checked on a model's parameter list without
loading weights. Every named parameter lands in exactly one block or in ``frozen`` (optional
embedding / final-norm / LM-head blocks switched off); tied weights appear once because
``named_parameters()`` de-duplicates them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from deca_ray.algorithm.choices import BLOCK_ORDERS

# Transformer layer containers across HF families: LLaMA/Qwen/Mistral `model.layers.N.`,
# GPT-2 `transformer.h.N.`, GPT-NeoX `gpt_neox.layers.N.`, OPT `decoder.layers.N.`, Falcon `h.N.`.
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")
_EMBEDDING = re.compile(r"(?:embed_tokens|wte|wpe|word_embeddings|position_embeddings|embed_positions|embed_in)\.")
_LM_HEAD = re.compile(r"(?:^|\.)(?:lm_head|embed_out)\.")
_FINAL_NORM = re.compile(r"(?:^|\.)(?:norm|ln_f|final_layer_norm|final_layernorm)\.")


@dataclass(frozen=True)
class Block:
    """One unit of DECA: trained, exchanged and given optimizer state only while active."""

    index: int
    name: str
    parameter_names: tuple[str, ...]
    numel: int


@dataclass(frozen=True)
class BlockPartition:
    """The blocks in model order (input side first) and the parameters no block trains."""

    blocks: tuple[Block, ...]
    frozen: tuple[str, ...]

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def trainable_numel(self) -> int:
        return sum(block.numel for block in self.blocks)


def partition_parameters(
    named_numels: Sequence[tuple[str, int]],
    *,
    layers_per_block: int = 2,
    include_embeddings: bool = False,
    include_final_norm: bool = False,
    include_lm_head: bool = False,
    groups: Sequence[tuple[str, str]] = (),
) -> BlockPartition:
    """Partition ``(name, numel)`` pairs (``named_parameters()`` order) into blocks.

    ``groups`` are ``(block_name, regex)`` pairs matched first (first match wins); then
    consecutive transformer layers are grouped ``layers_per_block`` at a time.
    """
    if layers_per_block < 1:
        raise ValueError(f"layers_per_block must be >= 1, got {layers_per_block}")
    compiled = [(name, re.compile(pattern)) for name, pattern in groups]
    switches = {"embeddings": include_embeddings, "final_norm": include_final_norm, "lm_head": include_lm_head}
    members: dict[str, list[str]] = {}  # block name -> parameter names, in first-seen order
    frozen: list[str] = []
    unmatched: list[str] = []
    layer_ids = sorted({int(m.group(1)) for name, _ in named_numels if (m := _LAYER.search(name))})
    layer_group = {layer: position // layers_per_block for position, layer in enumerate(layer_ids)}
    for name, _ in named_numels:
        kind = _classify(name, compiled, layer_group, layers_per_block, layer_ids)
        if kind is None:
            unmatched.append(name)
        elif kind in switches and not switches[kind]:
            frozen.append(name)
        else:
            members.setdefault(kind, []).append(name)
    if unmatched:
        raise ValueError(
            f"parameters fit no block rule: {unmatched[:5]}{' ...' if len(unmatched) > 5 else ''}; "
            "add an algorithm.blocks.groups entry (name + regex) that matches them"
        )
    numels = dict(named_numels)
    blocks = tuple(
        Block(index, name, tuple(names), sum(numels[n] for n in names))
        for index, (name, names) in enumerate(members.items())
    )
    return BlockPartition(blocks=blocks, frozen=tuple(frozen))


def layer_of(name: str) -> int | None:
    """The transformer layer a parameter or module name belongs to (None: outside the layers)."""
    match = _LAYER.search(f"{name}.")
    return int(match.group(1)) if match else None


def layers_of(names: Sequence[str]) -> list[int]:
    """Transformer layer indices that parameter ``names`` belong to, ascending."""
    return sorted({layer for name in names if (layer := layer_of(name)) is not None})


def partition_model(model: torch.nn.Module, **options: object) -> BlockPartition:
    """``partition_parameters`` over a module's (de-duplicated) named parameters."""
    return partition_parameters([(n, p.numel()) for n, p in model.named_parameters()], **options)  # type: ignore[arg-type]


def block_order(
    num_blocks: int,
    round_index: int,
    order: str = "ascending",
    seed: int = 0,
    fixed_order: Sequence[int] | None = None,
) -> list[int]:
    """Block indices visited in round ``round_index``: ascending, descending, random, or fixed."""
    if order == "ascending":
        return list(range(num_blocks))
    if order == "descending":
        return list(reversed(range(num_blocks)))
    if order == "random":
        # Seeded per round so every client (and a resumed run) draws the same order.
        generator = torch.Generator().manual_seed(seed * 1_000_003 + round_index)
        return torch.randperm(num_blocks, generator=generator).tolist()
    if order == "fixed":
        fixed = list(fixed_order or [])
        bad = [index for index in fixed if not 0 <= index < num_blocks]
        if not fixed or bad:
            raise ValueError(
                f"algorithm.blocks.fixed_order {fixed} must list block indices in 0..{num_blocks - 1}"
            )
        return fixed
    raise ValueError(f"unknown block order {order!r}; use one of {', '.join(BLOCK_ORDERS)}")


def _classify(
    name: str,
    groups: list[tuple[str, re.Pattern[str]]],
    layer_group: dict[int, int],
    layers_per_block: int,
    layer_ids: list[int],
) -> str | None:
    for group_name, pattern in groups:
        if pattern.search(name):
            return group_name
    if layer := _LAYER.search(name):
        group = layer_group[int(layer.group(1))]
        first = layer_ids[group * layers_per_block]
        last = layer_ids[min(len(layer_ids), (group + 1) * layers_per_block) - 1]
        return f"layers.{first}" if first == last else f"layers.{first}-{last}"
    if _EMBEDDING.search(name):
        return "embeddings"
    if _LM_HEAD.search(name):
        return "lm_head"
    if _FINAL_NORM.search(name):
        return "final_norm"
    return None
