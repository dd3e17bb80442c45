"""The step profile's FLOP counter on a shape small enough to count by hand."""

from __future__ import annotations

import pytest

from benchmarks.step.flops import (
    BatchShape,
    ModelShape,
    StepPlan,
    attention_flops,
    layer_flops,
    plan_for,
    projection_flops_per_token,
    step_flops,
    total_flops,
)
from deca_ray.data.batching import collate
from deca_ray.data.types import EncodedExample

# 2 layers, d = 4, f = 8, 2 query heads of d_h = 2 sharing 1 kv head (d_kv = 2), V = 10
SHAPE = ModelShape(num_layers=2, hidden_size=4, intermediate_size=8, num_heads=2, num_kv_heads=1, vocab_size=10)
# one sequence of 3 real tokens, 1 labelled position
BATCH = BatchShape(lengths=(3,), labelled=1, padded_width=3)
LAYER = 3 * 288 + 96  # projections over 3 tokens + attention: 960 per layer forward


def test_one_layer_counts_each_projection_and_the_causal_attention():
    # Execute
    per_token = projection_flops_per_token(SHAPE)
    # Assert: 2·d·d for q and o, 2·d·d_kv for k and v, 2·d·f for gate, up and down (288 per token)
    assert per_token == {"q": 32, "k": 16, "v": 16, "o": 32, "gate": 64, "up": 64, "down": 64}
    # causal: 1 + 2 + 3 = 6 (query, key) pairs per head, a d_h = 2 dot product (4 FLOPs) each, 2 heads,
    # once for the scores and once for the weighted sum
    assert attention_flops(SHAPE, 3) == 2 * (6 * 4 * 2) == 96
    assert layer_flops(SHAPE, BATCH) == (3 * 288, 96)


def test_top_layer_with_a_warm_prefix_runs_and_differentiates_only_that_layer_and_the_head():
    # Execute: train layer 1; the prefix replaces layer 0
    flops = step_flops(SHAPE, BATCH, plan_for([1], prefix_warm=True))
    # Assert: head 2·1·d·V = 80; backward = projections once + attention twice + head, weight grads of layer 1
    assert flops == {"forward_below": 0, "forward_layers": LAYER, "forward_head": 80,
                     "backward_activations": 864 + 2 * 96 + 80, "backward_weights": 864}
    assert total_flops(flops) == 3040


def test_without_the_prefix_the_layers_below_run_forward_only_and_full_logits_pay_the_head_everywhere():
    # Execute
    off = step_flops(SHAPE, BATCH, plan_for([1], prefix_warm=False))
    full = step_flops(SHAPE, BATCH, plan_for([1], prefix_warm=False, head_positions="all"))
    # Assert: layer 0 forward once; the full-logits head covers the 3 real tokens (2·3·4·10 = 240)
    assert off["forward_below"] == LAYER and off["backward_activations"] == 864 + 192 + 80
    assert full["forward_head"] == 240 and full["backward_activations"] == 864 + 192 + 240


def test_the_bottom_block_differentiates_every_layer_but_computes_weight_grads_only_for_its_own():
    # Execute
    flops = step_flops(SHAPE, BATCH, plan_for([0], prefix_warm=False))
    # Assert
    assert flops == {"forward_below": 0, "forward_layers": 2 * LAYER, "forward_head": 80,
                     "backward_activations": 2 * (864 + 192) + 80, "backward_weights": 864}


def test_batch_shape_counts_real_tokens_and_the_next_tokens_the_loss_reads():
    # Prepare: answers of 1 and 2 tokens, right-padded to 5
    batch = collate([EncodedExample((5, 6, 7), 2, 0), EncodedExample((5, 6, 7, 8, 9), 3, 0)], pad_token_id=0)
    # Execute
    shape = BatchShape.of(batch)
    # Assert
    assert shape == BatchShape(lengths=(3, 5), labelled=3, padded_width=5)
    assert shape.tokens == 8 and shape.padded_tokens == 10


def test_a_plan_with_a_trained_layer_below_the_gradient_start_is_rejected():
    with pytest.raises(ValueError, match="lowest trained layer"):
        StepPlan(first_forward_layer=1, lowest_grad_layer=1, trained_layers=frozenset({0}))
