"""The reference loop end to end on real BBC data: tiny model (fast) and SmolLM2 (slow)."""

from __future__ import annotations

import pytest

from deca_ray.config import config_from_dict
from deca_ray.experiment import build_clients, prepare_inputs
from deca_ray.reference import run_reference


def _bbc_config(model: dict, lr: float, inner_steps: int, blocks: dict) -> dict:
    return {
        "num_clients": 4,
        "model": model,
        "data": {"source": "bbc_news", "max_train_examples": 200, "test_size": 20, "max_tokens": 64,
                 "body_words": 25, "batch_size": 4},
        "topology": {"type": "ring"},
        "algorithm": {"rounds": 1, "inner_steps": inner_steps, "lr": lr, "blocks": blocks},
        "runtime": {"backend": "local"},
    }


def _train(raw: dict):
    config = config_from_dict(raw)
    inputs = prepare_inputs(config)
    clients = build_clients(config, inputs)
    return run_reference(clients, inputs.topology, config.algorithm, config.seed)


def _mean(values) -> float:
    return sum(values) / len(values)


def test_reference_loop_lowers_training_loss_on_bbc_with_tiny_model(tokenizer):
    # Prepare: 4 clients, tiny LLaMA (4 layers → 2 blocks of 2), 5 inner steps per block.
    tiny = {"name": "tiny-llama", "tiny": {"num_layers": 4, "hidden_size": 64, "num_heads": 4, "num_kv_heads": 2,
                                           "intermediate_size": 128}}
    # Execute
    history = _train(_bbc_config(tiny, lr=3e-3, inner_steps=5, blocks={"layers_per_block": 2}))
    # Assert: 2 blocks × 5 steps; the loss falls from the first steps to the last
    assert [m.position.block_index for m in history] == [0] * 5 + [1] * 5
    assert _mean([m.mean_loss for m in history[-3:]]) < _mean([m.mean_loss for m in history[:3]]) - 0.05
    assert all(m.consensus_distance is not None for m in history)


@pytest.mark.slow
def test_reference_loop_lowers_training_loss_on_smollm2(tokenizer):
    smollm2 = {"name": "smollm2-135m"}
    history = _train(_bbc_config(smollm2, lr=1e-4, inner_steps=6,
                                 blocks={"layers_per_block": 2, "order": "fixed", "fixed_order": [14]}))
    assert _mean([m.mean_loss for m in history[-2:]]) < _mean([m.mean_loss for m in history[:2]])
