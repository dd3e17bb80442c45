"""Evaluation: cached label scores match one forward per (example, label); metrics; LM loss."""

from __future__ import annotations

import math

import pytest
import torch

from deca_ray.config import EvaluationConfig, ModelConfig
from deca_ray.data.batching import collate
from deca_ray.data.types import EncodedExample, PreparedData
from deca_ray.evaluate import (
    classification_metrics,
    evaluate,
    evaluate_classification,
    evaluate_language_modeling,
    score_labels,
)
from deca_ray.models import build_tiny_llama

# SmolLM2 ids of 'business', 'entertainment', 'politics': 1, 3 and 2 tokens.
LABEL_IDS = [(24406,), (293, 1327, 358), (6275, 13923)]


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_llama(ModelConfig(name="tiny-llama"), vocab_size=len(tokenizer), seed=0)


@pytest.fixture(scope="module")
def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id


def _example(prompt_length: int, answer: tuple[int, ...], label: int, pad_id: int, seed: int) -> EncodedExample:
    prompt = torch.randint(100, 40_000, (prompt_length,), generator=torch.Generator().manual_seed(seed)).tolist()
    prompt[prompt_length // 2] = pad_id  # pad == eos inside the prompt: masks must not come from ids
    return EncodedExample(input_ids=(*prompt, *answer), num_prompt_tokens=prompt_length, label=label)


def _examples(pad_id: int, labels: list[int]) -> list[EncodedExample]:
    lengths = [5, 13, 9, 2, 7]
    return [
        _example(lengths[i % len(lengths)], (*LABEL_IDS[label], pad_id), label, pad_id, seed=i)
        for i, label in enumerate(labels)
    ]


def _naive_sum_scores(model, examples: list[EncodedExample]) -> torch.Tensor:
    """One forward per (example, label) of prompt + label: the reference."""
    scores = torch.zeros(len(examples), len(LABEL_IDS))
    with torch.no_grad():
        for row, example in enumerate(examples):
            prompt = list(example.input_ids[: example.num_prompt_tokens])
            for column, label_ids in enumerate(LABEL_IDS):
                ids = torch.tensor([prompt + list(label_ids)])
                log_probs = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)  # (seq - 1, vocab)
                targets = ids[0, 1:]
                scores[row, column] = log_probs[torch.arange(len(targets)), targets][-len(label_ids) :].sum()
    return scores


def _favouring(model, token_ids: tuple[int, ...]):
    """A copy of ``model`` whose logits ignore the input and strongly favour ``token_ids``."""
    biased = build_tiny_llama(ModelConfig(name="tiny-llama"), vocab_size=model.config.vocab_size)
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[list(token_ids)] = 30.0
    biased.lm_head = head
    return biased


def _data(examples: list[EncodedExample], task: str = "classification") -> PreparedData:
    return PreparedData(
        task=task,
        client_shards=[examples],
        test=examples,
        label_words=["business", "entertainment", "politics"],
        label_answer_ids=LABEL_IDS,
    )


@pytest.mark.parametrize("batch_size", [1, 3])
def test_cached_scores_equal_one_forward_per_label(model, pad_id, batch_size):
    # Prepare
    examples = _examples(pad_id, [0, 1, 2, 1, 0])
    expected = _naive_sum_scores(model, examples)

    # Execute
    scores = score_labels(model, examples, LABEL_IDS, scoring="sum", batch_size=batch_size, pad_token_id=pad_id)

    # Assert
    assert scores.shape == (5, 3)
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)


def test_batch_size_does_not_change_scores(model, pad_id):
    examples = _examples(pad_id, [0, 1, 2, 1, 0])

    one = score_labels(model, examples, LABEL_IDS, batch_size=1, pad_token_id=pad_id)
    many = score_labels(model, examples, LABEL_IDS, batch_size=4, pad_token_id=pad_id)

    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)


def test_mean_scoring_divides_by_label_length(model, pad_id):
    examples = _examples(pad_id, [0, 1, 2])

    summed = score_labels(model, examples, LABEL_IDS, scoring="sum", pad_token_id=pad_id)
    mean = score_labels(model, examples, LABEL_IDS, scoring="mean", pad_token_id=pad_id)

    torch.testing.assert_close(mean[:, 0], summed[:, 0])  # single token: identical
    torch.testing.assert_close(mean[:, 1:], summed[:, 1:] / torch.tensor([3.0, 2.0]))
    assert (mean[:, 1:] > summed[:, 1:]).all()  # log-likelihoods are negative


def test_classification_metrics_on_hand_computed_confusion():
    labels = torch.tensor([0, 0, 1, 1, 2])
    predictions = torch.tensor([0, 1, 1, 1, 3])

    metrics = classification_metrics(predictions, labels, num_labels=5)

    # F1 per label = 2TP / (#predicted + #actual): 0 → 2/3, 1 → 4/5, 2 → 0, 3 (only predicted) → 0;
    # label 4 appears nowhere and is left out of the average (scikit-learn's convention).
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 0 + 0) / 4)


def test_model_preferring_a_label_is_always_right_and_loss_matches_model_loss(model, pad_id):
    biased = _favouring(model, LABEL_IDS[1])
    examples = _examples(pad_id, [1, 1, 1, 1])
    expected_loss = biased(**collate(examples, pad_id)).loss.item()

    metrics = evaluate_classification(biased, _data(examples), EvaluationConfig(batch_size=3), pad_id)

    assert metrics["accuracy"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert metrics["loss"] == pytest.approx(expected_loss, abs=1e-4)


def test_max_examples_takes_the_first_test_examples(model, pad_id):
    biased = _favouring(model, LABEL_IDS[1])
    examples = _examples(pad_id, [1, 1, 0, 2, 0])

    first_two = evaluate(biased, _data(examples), EvaluationConfig(max_examples=2), pad_id)
    all_five = evaluate(biased, _data(examples), EvaluationConfig(), pad_id)

    assert first_two["accuracy"] == 1.0
    assert all_five["accuracy"] == pytest.approx(2 / 5)


@pytest.mark.parametrize("was_training", [True, False])
def test_evaluate_runs_in_eval_mode_and_restores_training_mode(model, pad_id, was_training):
    modes_seen: list[bool] = []
    handle = model.register_forward_hook(lambda module, args, output: modes_seen.append(module.training))
    model.train(was_training)
    try:
        evaluate(model, _data(_examples(pad_id, [0, 1])), EvaluationConfig(), pad_id)
    finally:
        handle.remove()

    assert modes_seen and not any(modes_seen)
    assert model.training is was_training


def test_language_modeling_loss_equals_model_loss_over_answer_tokens(model, pad_id):
    examples = [
        _example(6, (11, 12, 13, 14, pad_id), -1, pad_id, seed=1),
        _example(11, (21, pad_id), -1, pad_id, seed=2),
        _example(3, (31, 32, 33, pad_id), -1, pad_id, seed=3),
    ]
    expected = model(**collate(examples, pad_id)).loss.item()  # mean over all answer tokens

    direct = evaluate_language_modeling(model, examples, batch_size=2, pad_token_id=pad_id)
    dispatched = evaluate(model, _data(examples, task="instruction"), EvaluationConfig(), pad_id)

    assert direct["loss"] == pytest.approx(expected, abs=1e-4)
    assert direct["perplexity"] == pytest.approx(math.exp(expected), rel=1e-4)
    assert dispatched["loss"] == pytest.approx(direct["loss"], abs=1e-5)


def test_scoring_labels_in_chunks_gives_the_same_scores(model, pad_id):
    # Prepare: 3 labels × batch 4 = 12 rows; budgets of 4 and 8 rows score 1 and 2 labels at a time
    examples = _examples(pad_id, [0, 1, 2, 1, 0])
    # Execute
    whole = score_labels(model, examples, LABEL_IDS, batch_size=4, pad_token_id=pad_id, max_rows=1000)
    chunked = [score_labels(model, examples, LABEL_IDS, batch_size=4, pad_token_id=pad_id, max_rows=rows)
               for rows in (4, 8)]
    # Assert
    for scores in chunked:
        torch.testing.assert_close(scores, whole, atol=1e-5, rtol=0)
