"""Label scores of many models that share x0's lower layers, from hidden states computed once.

Every model the quality suite scores (each method's x̄ and every client's own model) trains the
top decoder layers only; below the lowest trained layer L it is x0. So the hidden states entering
layer L for a held-out prompt, and for each label's step after it, are the same for every model of
a seed: ``score_x0`` computes them (and scores x0 itself, the before-training row) in one pass,
``score_from_layer`` then runs only layers L.. of a trained model from them (SmolLM2, L = 26 of 30:
~1/7 of a full evaluation). The scores are ``deca_ray.evaluate``'s: the summed log-likelihood of
each label's answer tokens after the prompt, one pass per prompt with its KV cache repeated per
label; ``label_predictions`` normalises and takes the argmax as the runs' own evaluation does.

Masks are passed as 4-D additive masks: the skipped layers never fill their slot of the cache, so
the masks transformers would derive from the cache's length could not be used.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from deca_ray.client.forward import layers_skipped_below
from deca_ray.data.types import EncodedExample


@dataclass
class PrefixStates:
    """Per example, the hidden states entering decoder layer ``layer``: (prompt length − 1, hidden) for the
    prompt's cached part, and per label (label length, hidden) for [last prompt token, label[:-1]]."""

    layer: int
    prompts: list[torch.Tensor]
    labels: list[list[torch.Tensor]]


def score_x0(
    model: torch.nn.Module, examples: Sequence[EncodedExample], label_answer_ids: Sequence[tuple[int, ...]],
    layer: int, max_rows: int = 128,
) -> tuple[torch.Tensor, PrefixStates]:
    """x0's summed label log-likelihoods (num_examples, num_labels) and the states entering ``layer``."""
    embed, device = model.get_input_embeddings(), _device(model)  # type: ignore[operator]
    with torch.inference_mode():
        prompts = [embed(torch.tensor(example.input_ids[: example.num_prompt_tokens - 1], device=device))
                   for example in examples]
        labels = [[embed(torch.tensor(_step_ids(example, ids), device=device)) for ids in label_answer_ids]
                  for example in examples]
    states = PrefixStates(0, prompts, labels)
    captured = PrefixStates(layer, [], [])
    sums = _score(model, examples, label_answer_ids, states, max_rows, captured)
    return sums, captured


def score_from_layer(
    model: torch.nn.Module, examples: Sequence[EncodedExample], label_answer_ids: Sequence[tuple[int, ...]],
    states: PrefixStates, max_rows: int = 128,
) -> torch.Tensor:
    """``model``'s summed label log-likelihoods (num_examples, num_labels), running layers ``states.layer``.. only.

    Valid only for a model whose layers below ``states.layer`` (and embeddings) are the x0 the states came from.
    """
    return _score(model, examples, label_answer_ids, states, max_rows, None)


def _score(
    model: torch.nn.Module, examples: Sequence[EncodedExample], label_answer_ids: Sequence[tuple[int, ...]],
    states: PrefixStates, max_rows: int, capture: PrefixStates | None,
) -> torch.Tensor:
    if min(example.num_prompt_tokens for example in examples) < 2:
        raise ValueError("prompts need at least 2 tokens (the cached prefix must not be empty)")
    batch_size = max(1, max_rows // len(label_answer_ids))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), layers_skipped_below(model, states.layer):
            rows = [_batch(model, examples[start : start + batch_size], label_answer_ids, states, start, capture)
                    for start in range(0, len(examples), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(rows)


def _batch(
    model: torch.nn.Module, examples: Sequence[EncodedExample], label_answer_ids: Sequence[tuple[int, ...]],
    states: PrefixStates, offset: int, capture: PrefixStates | None,
) -> torch.Tensor:
    decoder: Any = model.get_decoder()  # type: ignore[operator]
    device = _device(model)
    num_labels, indices = len(label_answer_ids), range(offset, offset + len(examples))
    prompt_embeds, prompt_mask = _pad([states.prompts[index] for index in indices], device)  # (B, P, hidden), (B, P)
    steps = [states.labels[index][label] for index in indices for label in range(num_labels)]
    step_embeds, step_mask = _pad(steps, device)  # (B·K, C, hidden): rows example-major, label-minor
    prompt_lengths = torch.tensor([example.num_prompt_tokens for example in examples], device=device)
    step_positions = ((prompt_lengths - 1).repeat_interleave(num_labels)[:, None]
                      + torch.arange(step_embeds.shape[1], device=device))
    captured: list[torch.Tensor] = []
    with _capturing(decoder, capture.layer if capture is not None else None, captured):
        prompt_output = decoder(
            inputs_embeds=prompt_embeds, attention_mask=_prompt_mask(prompt_mask, prompt_embeds.dtype),
            position_ids=torch.arange(prompt_embeds.shape[1], device=device).expand(len(examples), -1), use_cache=True,
        )
        cache = prompt_output.cache
        cache.batch_repeat_interleave(num_labels)
        hidden = decoder(
            inputs_embeds=step_embeds, attention_mask=_step_mask(prompt_mask, step_mask, num_labels, step_embeds.dtype),
            position_ids=step_positions, cache=cache, use_cache=True,
        ).last_hidden_state  # (B·K, C, hidden), final norm applied
    if capture is not None:
        _keep(capture, captured, prompt_mask, step_mask, num_labels)
    targets = [ids for _ in examples for ids in label_answer_ids]
    return _target_log_likelihoods(model, hidden, targets, step_mask).view(len(examples), num_labels)


def _target_log_likelihoods(
    model: torch.nn.Module, hidden: torch.Tensor, targets: Sequence[tuple[int, ...]], mask: torch.Tensor
) -> torch.Tensor:
    """Σ_t log p(target_t) per row; the head runs on the label positions only."""
    selected = mask.bool()
    logits = model.get_output_embeddings()(hidden[selected])  # type: ignore[operator]  # (label tokens, vocab)
    flat_targets = torch.tensor([token for ids in targets for token in ids], device=logits.device)
    picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, flat_targets[:, None]).squeeze(-1)
    sums = torch.zeros(mask.shape, dtype=picked.dtype, device=picked.device)
    sums[selected] = picked
    return sums.sum(dim=1).cpu()


def _keep(capture: PrefixStates, captured: list[torch.Tensor], prompt_mask: torch.Tensor, step_mask: torch.Tensor,
          num_labels: int) -> None:
    """Unpad what the hook saw (the prompt pass, then the label pass) into ``capture``, per example."""
    prompt_states, step_states = captured
    step_lengths = step_mask.sum(dim=1).tolist()
    for row, length in enumerate(prompt_mask.sum(dim=1).tolist()):  # kept on the CPU: one seed's are ~100 MB
        capture.prompts.append(prompt_states[row, :length].cpu().clone())
        capture.labels.append([step_states[row * num_labels + label, : step_lengths[row * num_labels + label]]
                               .cpu().clone() for label in range(num_labels)])


def _step_ids(example: EncodedExample, label_ids: tuple[int, ...]) -> list[int]:
    """The tokens fed to score ``label_ids``: the prompt's last token, then the label's but its last."""
    return [example.input_ids[example.num_prompt_tokens - 1], *label_ids[:-1]]


def _pad(rows: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (batch, longest, hidden) and its (batch, longest) mask of real positions, on ``device``."""
    width = max(row.shape[0] for row in rows)
    padded = torch.zeros((len(rows), width, rows[0].shape[-1]), dtype=rows[0].dtype, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for index, row in enumerate(rows):
        padded[index, : row.shape[0]] = row
        mask[index, : row.shape[0]] = 1
    return padded, mask


def _prompt_mask(prompt_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, P, P): causal, padded keys hidden. A padded query still sees the real keys before it (no empty row)."""
    width = prompt_mask.shape[1]
    causal = torch.ones((width, width), dtype=torch.bool, device=prompt_mask.device).tril()
    return _additive(causal[None] & prompt_mask.bool()[:, None, :], dtype)


def _step_mask(prompt_mask: torch.Tensor, step_mask: torch.Tensor, num_labels: int, dtype: torch.dtype) -> torch.Tensor:
    """(B·K, 1, C, P + C): every real prompt key, then the label steps causally."""
    width = step_mask.shape[1]
    prompt_keys = prompt_mask.bool().repeat_interleave(num_labels, dim=0)[:, None, :].expand(-1, width, -1)
    causal = torch.ones((width, width), dtype=torch.bool, device=step_mask.device).tril()
    step_keys = causal[None] & step_mask.bool()[:, None, :]
    return _additive(torch.cat([prompt_keys, step_keys], dim=2), dtype)


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(rows, 1, queries, keys): 0 where a query may attend, the dtype's minimum elsewhere."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def _capturing(decoder: Any, layer: int | None, captured: list[torch.Tensor]) -> Iterator[None]:
    """Each forward's input to decoder layer ``layer`` is appended to ``captured`` (nothing when None)."""
    if layer is None:
        yield
        return

    def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append(args[0] if args else kwargs["hidden_states"])

    handle = decoder.layers[layer].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
