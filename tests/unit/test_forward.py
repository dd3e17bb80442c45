"""The training forward: the answer-only head and the frozen prefix give the losses and parameters of the plain path."""

from __future__ import annotations

import pytest
import torch

from deca_ray.algorithm.topology import build_topology
from deca_ray.data.batching import collate
from deca_ray.errors import ConfigError
from deca_ray.reference import run_reference
from tests.helpers import PAD, tiny_client, tiny_config

ALL_METHODS = ["centralized_adam", "dadam", "dec_adapter", "dec_lora", "deca", "decaf", "dsgd", "local_block_adam"]
TOP_BLOCK = {"blocks": {"layers_per_block": 2, "order": "fixed", "fixed_order": [1]}}  # layers 2-3 of 4


@pytest.mark.parametrize("method", ALL_METHODS)
def test_answer_only_loss_equals_the_full_logits_loss(method):
    # Prepare: a client of each method, a batch with prompts and answers of different lengths
    client = tiny_client(tiny_config(algorithm={"type": method}, runtime={"frozen_prefix": "off"}))
    batch = collate(client.shard[:4], PAD)
    # Execute
    with torch.no_grad():
        full = client.model(**batch).loss  # HF: the head over every position
        answer_only = client.forward.loss(batch, [0, 1, 2, 3])
    # Assert
    assert client.forward.prefix is None
    assert abs(float(full) - float(answer_only)) < 1e-6


@pytest.mark.parametrize("method", ["deca", "dec_lora"])
def test_frozen_prefix_trains_like_the_uncached_path(method):
    # Prepare: the same 3 clients with and without the prefix, training only the top block
    def clients(mode):
        config = tiny_config(algorithm={"type": method, "inner_steps": 4} | TOP_BLOCK, runtime={"frozen_prefix": mode})
        return config, [tiny_client(config, i) for i in range(3)]

    config, cached = clients("auto")
    _, plain = clients("off")
    topology = build_topology("ring", 3)
    # Execute: 4 steps, each client's shard (16 examples, batch 2) partly seen twice
    cached_history = run_reference(cached, topology, config.algorithm, seed=0)
    plain_history = run_reference(plain, topology, config.algorithm, seed=0)
    # Assert: the prefix was used (entering layer 2), and losses and parameters agree
    assert cached[0].forward.prefix is not None and cached[0].forward.prefix.layer == 2
    for with_prefix, without in zip(cached_history, plain_history, strict=True):
        torch.testing.assert_close(with_prefix.client_losses, without.client_losses, rtol=1e-5, atol=1e-6)
    for with_prefix, without in zip(cached, plain, strict=True):
        for name, value in with_prefix.trainable_state().items():
            torch.testing.assert_close(value, without.trainable_state()[name], rtol=1e-5, atol=1e-6)


def test_auto_uses_no_prefix_when_the_bottom_layer_trains():
    client = tiny_client(tiny_config())  # every block, layer 0 included, is trained
    assert client.forward.prefix is None


def test_asking_for_a_prefix_below_a_trained_layer_names_what_trains(tmp_path):
    from deca_ray.experiment import prepare_inputs

    config = tiny_config(runtime={"frozen_prefix": "on"}, data={"source": str(tmp_path / "unused.jsonl")})
    with pytest.raises(ConfigError, match=r"model.layers.0.* trains; train higher blocks only"):
        prepare_inputs(config)


def test_a_prefix_larger_than_its_limit_is_not_used_in_auto_and_an_error_when_asked_for():
    small = {"frozen_prefix_max_mb": 1e-4}
    client = tiny_client(tiny_config(algorithm=TOP_BLOCK, runtime=small))
    assert client.forward.prefix is None
    with pytest.raises(ValueError, match=r"frozen_prefix_max_mb"):
        tiny_client(tiny_config(algorithm=TOP_BLOCK, runtime=small | {"frozen_prefix": "on"}))
