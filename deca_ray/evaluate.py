"""Held-out evaluation: label scoring from one pass per prompt, classification metrics, LM loss."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from transformers import Cache, PreTrainedModel

from deca_ray.config import EvaluationConfig
from deca_ray.data.types import EncodedExample, PreparedData

Scoring = Literal["mean", "sum"]


def score_labels(
    model: PreTrainedModel,
    examples: Sequence[EncodedExample],
    label_answer_ids: Sequence[tuple[int, ...]],
    scoring: Scoring = "mean",
    batch_size: int = 16,
    *,
    pad_token_id: int,
    max_rows: int = 64,
) -> torch.Tensor:
    """Log-likelihood of each label's answer tokens after each prompt: (num_examples, num_labels).

    ``mean`` divides by the label's token count (length-normalised), ``sum`` does not.
    """
    sums = continuation_log_likelihoods(
        model, examples, [list(label_answer_ids)] * len(examples), batch_size, pad_token_id, max_rows
    )
    return _normalise(sums, [len(ids) for ids in label_answer_ids], scoring)


def continuation_log_likelihoods(
    model: PreTrainedModel,
    examples: Sequence[EncodedExample],
    candidates: Sequence[Sequence[tuple[int, ...]]],
    batch_size: int,
    pad_token_id: int,
    max_rows: int = 64,
) -> torch.Tensor:
    """Summed log-probabilities of candidates[i][k] following example i's prompt: (num_examples, K).

    Each prompt runs once; its KV cache is copied per candidate, so the candidates (a few
    tokens each) are all that is recomputed: evaluation cost ~ one forward per example.
    Memory: a copied cache row per (prompt, candidate) pair, at most ``max_rows`` at once
    (SmolLM2, 256 tokens: ~12 MB a row), so many labels are scored in chunks of candidates
    instead of all at once (43 labels × batch 16 would hold 8 GB).
    """
    if not examples:
        return torch.zeros((0, 0))
    with _eval_mode(model):
        rows = [
            _batch_log_likelihoods(
                model, examples[start : start + batch_size], candidates[start : start + batch_size], pad_token_id,
                max_rows,
            )
            for start in range(0, len(examples), batch_size)
        ]
    return torch.cat(rows)


def _batch_log_likelihoods(
    model: PreTrainedModel,
    examples: Sequence[EncodedExample],
    candidates: Sequence[Sequence[tuple[int, ...]]],
    pad_token_id: int,
    max_rows: int,
) -> torch.Tensor:
    num_candidates = len(candidates[0])
    if any(len(row) != num_candidates or not all(row) for row in candidates):
        raise ValueError("every example needs the same number of candidates, each of at least one token")
    prompt_cache, prefix_mask = _prompt_prefix_cache(model, examples, pad_token_id)
    per_chunk = max(1, max_rows // len(examples))
    starts = range(0, num_candidates, per_chunk)
    return torch.cat([
        _chunk_log_likelihoods(
            model, examples, [row[start : start + per_chunk] for row in candidates],
            prompt_cache if start == starts[-1] else copy.deepcopy(prompt_cache), prefix_mask, pad_token_id,
        )
        for start in starts
    ], dim=1)


def _chunk_log_likelihoods(
    model: PreTrainedModel,
    examples: Sequence[EncodedExample],
    candidates: Sequence[Sequence[tuple[int, ...]]],
    cache: Cache,
    prefix_mask: torch.Tensor,
    pad_token_id: int,
) -> torch.Tensor:
    """(batch, K) for one chunk of K candidates per prompt; consumes ``cache`` (repeated in place)."""
    num_candidates = len(candidates[0])
    cache.batch_repeat_interleave(num_candidates)  # rows: example-major, candidate-minor
    # Input per candidate: [last prompt token, candidate[:-1]]; logit t predicts candidate[t].
    device = model.device
    targets, target_mask = _right_pad([tuple(c) for row in candidates for c in row], pad_token_id, device)
    last_prompt_ids = torch.tensor([ex.input_ids[ex.num_prompt_tokens - 1] for ex in examples], device=device)
    step_ids = torch.cat([last_prompt_ids.repeat_interleave(num_candidates)[:, None], targets[:, :-1]], dim=1)
    # Positions continue each prompt's own length, not the padded prefix width: (batch * K, L).
    prompt_lengths = torch.tensor([example.num_prompt_tokens for example in examples], device=device)
    positions = (prompt_lengths - 1).repeat_interleave(num_candidates)[:, None] + torch.arange(
        targets.shape[1], device=device
    )
    # Cached prefix keys (padding masked) then the candidate's own tokens: (batch * K, prefix + L).
    attention_mask = torch.cat([prefix_mask.repeat_interleave(num_candidates, dim=0), target_mask], dim=1)
    logits = model(
        input_ids=step_ids, attention_mask=attention_mask, position_ids=positions, cache=cache
    ).logits  # (batch * K, max candidate length, vocab)
    log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    return (log_probs * target_mask).sum(dim=1).view(len(examples), num_candidates).cpu()


def _prompt_prefix_cache(
    model: PreTrainedModel, examples: Sequence[EncodedExample], pad_token_id: int
) -> tuple[Cache, torch.Tensor]:
    """KV cache of every prompt but its last token, and the prefix mask (batch, longest prefix).

    Right padding: padded queries still see real keys, so no attention row is fully masked
    and no NaN leaks into the cache (left padding would need that care plus position ids).
    """
    if min(example.num_prompt_tokens for example in examples) < 2:
        raise ValueError("prompts need at least 2 tokens (the cached prefix must not be empty)")
    prefixes = [example.input_ids[: example.num_prompt_tokens - 1] for example in examples]
    prefix_ids, prefix_mask = _right_pad(prefixes, pad_token_id, model.device)
    # logits_to_keep=1: the prefix's logits are never read, only its cache.
    output = model(input_ids=prefix_ids, attention_mask=prefix_mask, use_cache=True, logits_to_keep=1)
    return output.cache, prefix_mask


def label_predictions(
    sums: torch.Tensor, label_answer_ids: Sequence[tuple[int, ...]], scoring: Scoring = "mean"
) -> torch.Tensor:
    """Each example's predicted label (num_examples,) from its summed label log-likelihoods (num_examples,
    num_labels): the argmax after ``scoring``'s normalisation, as the held-out evaluation predicts."""
    return _normalise(sums, [len(ids) for ids in label_answer_ids], scoring).argmax(dim=1)


def classification_metrics(predictions: torch.Tensor, labels: torch.Tensor, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1, scikit-learn's convention: the F1 average runs over labels present
    in labels ∪ predictions, and a label's F1 is 0 when its precision + recall is 0."""
    f1_scores = []
    for label in range(num_labels):
        predicted, actual = predictions == label, labels == label
        if not (predicted.any() or actual.any()):
            continue
        true_positives = int((predicted & actual).sum())
        # F1 = 2TP / (2TP + FP + FN) = 2TP / (#predicted + #actual); equals 0 when P + R = 0.
        f1_scores.append(2 * true_positives / (int(predicted.sum()) + int(actual.sum())))
    accuracy = float((predictions == labels).float().mean()) if len(labels) else 0.0
    return {"accuracy": accuracy, "macro_f1": sum(f1_scores) / len(f1_scores) if f1_scores else 0.0}


def evaluate_classification(
    model: PreTrainedModel, data: PreparedData, config: EvaluationConfig, pad_token_id: int
) -> dict[str, float]:
    """Accuracy and macro-F1 of argmax label scores, plus the answer-token loss, on the test split."""
    examples = data.test[: config.max_examples]
    num_labels = len(data.label_answer_ids)
    # One extra candidate per example: its own answer (label + end-of-turn) gives the loss for free.
    candidates = [[*data.label_answer_ids, _answer_ids(example)] for example in examples]
    sums = continuation_log_likelihoods(model, examples, candidates, config.batch_size, pad_token_id, config.max_rows)
    predictions = label_predictions(sums[:, :num_labels], data.label_answer_ids, config.scoring)
    labels = torch.tensor([example.label for example in examples])
    metrics = classification_metrics(predictions, labels, num_labels)
    metrics["loss"] = _mean_answer_loss(sums[:, num_labels], examples)
    return metrics


def evaluate_language_modeling(
    model: PreTrainedModel, examples: Sequence[EncodedExample], batch_size: int, pad_token_id: int
) -> dict[str, float]:
    """Mean negative log-likelihood per answer token (all tokens weigh equally) and its perplexity."""
    answers = [[_answer_ids(example)] for example in examples]
    sums = continuation_log_likelihoods(model, examples, answers, batch_size, pad_token_id)
    loss = _mean_answer_loss(sums[:, 0], examples)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}  # exp overflows a float past ~709


def evaluate(
    model: PreTrainedModel, data: PreparedData, config: EvaluationConfig, pad_token_id: int
) -> dict[str, float]:
    """Metrics on the held-out split, chosen by the task."""
    if data.task == "classification":
        return evaluate_classification(model, data, config, pad_token_id)
    if data.task == "instruction":
        return evaluate_language_modeling(model, data.test[: config.max_examples], config.batch_size, pad_token_id)
    raise ValueError(f"unknown task {data.task!r}; expected 'classification' or 'instruction'")


def _answer_ids(example: EncodedExample) -> tuple[int, ...]:
    return example.input_ids[example.num_prompt_tokens :]


def _mean_answer_loss(answer_log_likelihoods: torch.Tensor, examples: Sequence[EncodedExample]) -> float:
    num_tokens = sum(len(_answer_ids(example)) for example in examples)
    return float(-answer_log_likelihoods.sum() / max(num_tokens, 1))


def _normalise(sums: torch.Tensor, lengths: Sequence[int], scoring: Scoring) -> torch.Tensor:
    if scoring == "sum":
        return sums
    if scoring == "mean":
        return sums / torch.tensor(lengths, dtype=sums.dtype)
    raise ValueError(f"scoring must be 'mean' or 'sum', not {scoring!r}")


def _right_pad(
    sequences: Sequence[Sequence[int]], pad_token_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (num_sequences, longest); the mask comes from lengths, not pad ids."""
    width = max(len(sequence) for sequence in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids.to(device), mask.to(device)


@contextmanager
def _eval_mode(model: PreTrainedModel) -> Iterator[None]:
    """Eval mode and no autograd inside; the caller's training mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
