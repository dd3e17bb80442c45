"""Block partition by parameter names, and block order."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from deca_ray.algorithm.blocks import block_order, partition_model, partition_parameters
from tests.helpers import tiny_client, tiny_config

# SmolLM2-135M's shape (ASSETS.md), built on the meta device: names and sizes, no weights.
SMOLLM2_SHAPE = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)


@pytest.fixture(scope="module")
def smollm2_names():
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**SMOLLM2_SHAPE))
    return [(name, p.numel()) for name, p in model.named_parameters()]


def _covered_once(partition, named):
    seen = [n for block in partition.blocks for n in block.parameter_names] + list(partition.frozen)
    return sorted(seen) == sorted(n for n, _ in named) and len(seen) == len(set(seen))


def test_smollm2_partition_covers_every_parameter_once(smollm2_names):
    partition = partition_parameters(smollm2_names, layers_per_block=2, include_embeddings=True,
                                     include_final_norm=True, include_lm_head=True)
    assert _covered_once(partition, smollm2_names)
    assert partition.frozen == ()
    assert [b.name for b in partition.blocks][:2] == ["embeddings", "layers.0-1"]
    assert partition.num_blocks == 1 + 15 + 1  # tied LM head is the embedding: counted once
    assert partition.trainable_numel == sum(n for _, n in smollm2_names) == 134_515_008


def test_default_partition_freezes_embeddings_and_norm(smollm2_names):
    partition = partition_parameters(smollm2_names, layers_per_block=2)
    assert _covered_once(partition, smollm2_names)
    assert set(partition.frozen) == {"model.embed_tokens.weight", "model.norm.weight"}
    assert [b.name for b in partition.blocks] == [f"layers.{i}-{i + 1}" for i in range(0, 30, 2)]


def test_uneven_layers_per_block_keeps_the_remainder(smollm2_names):
    partition = partition_parameters(smollm2_names, layers_per_block=4)
    assert [b.name for b in partition.blocks][-1] == "layers.28-29"
    assert partition.num_blocks == 8


def test_tiny_model_partition_covers_every_parameter_once():
    client = tiny_client(tiny_config())
    named = [(n, p.numel()) for n, p in client.model.named_parameters()]
    partition = partition_model(client.model, layers_per_block=1, include_embeddings=True, include_final_norm=True)
    assert _covered_once(partition, named)
    assert partition.num_blocks == 4 + 2


def test_custom_regex_groups_win_over_layer_rule(smollm2_names):
    partition = partition_parameters(smollm2_names, groups=[("attention", r"self_attn\."), ("mlp", r"\.mlp\.")])
    assert [b.name for b in partition.blocks] == ["attention", "mlp", *[f"layers.{i}-{i + 1}" for i in range(0, 30, 2)]]
    assert all("self_attn" in n for n in partition.blocks[0].parameter_names)
    assert _covered_once(partition, smollm2_names)


def test_unknown_parameter_names_ask_for_a_group():
    with pytest.raises(ValueError, match="algorithm.blocks.groups"):
        partition_parameters([("model.layers.0.w", 4), ("adapter.scale", 1)])


def test_block_orders():
    assert block_order(4, 0, "ascending") == [0, 1, 2, 3]
    assert block_order(4, 0, "descending") == [3, 2, 1, 0]
    assert block_order(4, 0, "fixed", fixed_order=[2, 0]) == [2, 0]
    first, again, other_round = (block_order(8, r, "random", seed=3) for r in (0, 0, 1))
    assert sorted(first) == list(range(8)) and first == again and first != other_round
    with pytest.raises(ValueError, match="fixed_order"):
        block_order(4, 0, "fixed", fixed_order=[5])
