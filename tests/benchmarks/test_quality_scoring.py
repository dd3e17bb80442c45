"""Scoring from x0's hidden states gives deca_ray.evaluate's label scores; the held-out parts are stratified."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from benchmarks.quality.final_models import check_above
from benchmarks.quality.held_out import HeldOutCache, Parts
from benchmarks.quality.scoring import score_from_layer, score_x0
from deca_ray.config import config_from_dict
from deca_ray.data.prepare import prepare_data
from deca_ray.evaluate import label_predictions, score_labels
from deca_ray.product.assemble import network_model

TOP = [3, 2]
"""The tiny model's top two of four layers: everything below layer 2 stays x0."""


def _config(method: str, test_size: int = 20, seed: int = 0):
    return config_from_dict({
        "seed": seed, "num_clients": 1, "model": {"name": "tiny-llama"}, "partition": {"type": "iid"},
        "data": {"test_size": test_size, "body_words": 20, "max_tokens": 48},
        "algorithm": {"type": method, "blocks": {"order": "fixed", "fixed_order": TOP}},
    })


def _trained(model: torch.nn.Module) -> torch.nn.Module:
    """x0 with every parameter of layers 2 and 3 moved (method modules included), as training would."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".layers.2." in name or ".layers.3." in name:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.mark.parametrize("method", ["deca", "dec_lora", "dec_adapter"])
def test_scores_from_layer_two_equal_a_full_evaluation_of_x0_and_of_a_trained_model(tokenizer, method):
    # Prepare
    config = _config(method)
    data = prepare_data(config, tokenizer)
    pad = int(tokenizer.pad_token_id)
    x0 = network_model(config, {}, tokenizer)
    # Execute: x0's own pass keeps the states entering layer 2; the trained model runs layers 2 and 3 only
    x0_sums, states = score_x0(x0, data.test, data.label_answer_ids, layer=2, max_rows=30)
    trained = _trained(network_model(config, {}, tokenizer))
    sums = score_from_layer(trained, data.test, data.label_answer_ids, states, max_rows=30)
    # Assert: deca_ray.evaluate's scores (other batch sizes), and training changed them
    expected_x0 = score_labels(x0, data.test, data.label_answer_ids, "sum", batch_size=7, pad_token_id=pad)
    expected = score_labels(trained, data.test, data.label_answer_ids, "sum", batch_size=7, pad_token_id=pad)
    torch.testing.assert_close(x0_sums, expected_x0, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(sums, expected, atol=1e-4, rtol=1e-5)
    assert not torch.allclose(sums, x0_sums, atol=1e-3)
    assert torch.equal(label_predictions(sums, data.label_answer_ids), label_predictions(expected, data.label_answer_ids))


def test_a_model_trained_below_the_scoring_layer_is_refused():
    check_above({"model.layers.2.mlp.up_proj.weight": torch.zeros(1), "model.layers.3.x": torch.zeros(1)}, 2)
    with pytest.raises(ValueError, match="below decoder layer 2"):
        check_above({"model.layers.1.mlp.up_proj.weight": torch.zeros(1)}, 2)
    with pytest.raises(ValueError, match="model.embed_tokens.weight"):
        check_above({"model.embed_tokens.weight": torch.zeros(1)}, 2)


def test_validation_test_and_client_parts_of_the_held_out_split_keep_the_label_proportions(tokenizer, tmp_path):
    # Prepare: the full preset's data settings on the real data set (600 held out), x0 = tiny model
    config = config_from_dict({"num_clients": 8, "model": {"name": "tiny-llama", "tiny": {"num_layers": 2}},
                               "data": {"source": "bbc_news", "test_size": 600, "body_words": 32, "max_tokens": 80},
                               "algorithm": {"blocks": {"order": "fixed", "fixed_order": [1]}}})
    labels = [example.label for example in prepare_data(config, tokenizer).test]
    parts = Parts.of(100, 100, len(labels))
    # Assert: each part's label counts within 1 of the whole held-out set's proportions
    overall = Counter(labels)
    for part in (parts.validation, parts.test, parts.clients):
        counts = Counter(labels[part])
        size = len(labels[part])
        assert all(abs(counts[label] - overall[label] * size / len(labels)) <= 1 for label in overall), (part, counts)
    assert (len(labels[parts.validation]), len(labels[parts.test]), len(labels[parts.clients])) == (100, 500, 100)
    with pytest.raises(ValueError, match="no test split"):
        Parts.of(600, 100, 600)


def test_held_out_of_a_seed_is_computed_once_then_read_from_disk(tmp_path):
    # Prepare
    config = _config("deca", test_size=12, seed=1)
    first = HeldOutCache(tmp_path, layer=2).get(config)
    # Execute: a new process (a new cache object) on the same seed, and another seed
    again = HeldOutCache(tmp_path, layer=2).get(config)
    other = HeldOutCache(tmp_path, layer=2).get(_config("deca", test_size=12, seed=2))
    # Assert
    assert first.score_s > 0 and again.score_s == 0 and again.digest == first.digest
    torch.testing.assert_close(again.x0_sums, first.x0_sums)
    assert [e.input_ids for e in again.examples] == [e.input_ids for e in first.examples]
    assert other.digest != first.digest and len(list(tmp_path.glob("x0-states-*.pt"))) == 2
