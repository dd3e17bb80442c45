"""The training forward: the LM head only where labels are, and an optional frozen prefix.

- **Answer-only head.** The loss reads only the answer tokens (1–3 of ~80 in classification),
  so the head (hidden × vocabulary, SmolLM2: 576 × 49,152) is applied to those positions'
  hidden states only, not to every position as ``model(labels=...)`` does. Same loss: the mean
  token cross-entropy over labelled positions, logits in fp32.
- **Frozen prefix.** When nothing below decoder layer L is ever trained in a run, the hidden
  states entering layer L never change: each example's are computed once (alone, unpadded, so
  the values do not depend on batch composition and a resumed run sees the same ones) and the
  decoder runs from layer L on, the layers below replaced by the identity for that forward.
  Only for decoder families whose forward feeds ``inputs_embeds`` to layer 0 unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from deca_ray.algorithm.blocks import layer_of
from deca_ray.client.model import ClientSpec
from deca_ray.data.batching import IGNORE_INDEX
from deca_ray.data.types import EncodedExample

PREFIX_FAMILIES = ("llama", "qwen2", "mistral")
"""``config.model_type`` of the families whose decoder passes ``inputs_embeds`` to layer 0 as is
(Gemma, for one, scales them first, so a cached prefix would be scaled twice)."""


def answer_loss(
    model: torch.nn.Module, batch: Mapping[str, torch.Tensor], inputs_embeds: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy of the labelled next tokens, the head applied to those positions only."""
    decoder = model.get_decoder()  # type: ignore[operator]
    inputs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": batch["input_ids"]}
    hidden = decoder(**inputs, attention_mask=batch["attention_mask"], use_cache=False).last_hidden_state
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    labelled = targets != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][labelled])  # type: ignore[operator]  # (answer tokens, vocab)
    return F.cross_entropy(logits.float(), targets[labelled])


def lowest_trained_layer(model: torch.nn.Module, trained_names: Sequence[str]) -> tuple[int, list[str]]:
    """(L, what trains below layer L, if anything): the layer a frozen prefix could start at.

    A trained parameter outside the decoder layers counts as layer 0 unless it sits above them
    (the final norm, an untied head); a head tied to the input embeddings trains the embeddings.
    """
    parameters = dict(model.named_parameters())
    embedding = model.get_input_embeddings().weight  # type: ignore[operator]
    above = {id(p) for p in model.get_decoder().norm.parameters()}  # type: ignore[operator]
    above |= {id(p) for p in model.get_output_embeddings().parameters()} - {id(embedding)}  # type: ignore[operator]
    lowest, below_layers = len(model.get_decoder().layers), []  # type: ignore[operator]
    for name in trained_names:
        layer = layer_of(name)
        if layer is not None:
            lowest = min(lowest, layer)
        elif id(parameters[name]) not in above:
            below_layers.append(name)
    return (0, below_layers) if below_layers else (lowest, [])


class FrozenPrefix:
    """The hidden states entering decoder layer ``layer`` for each example of a shard, computed on first use."""

    def __init__(self, model: torch.nn.Module, layer: int, shard: Sequence[EncodedExample]) -> None:
        if layer < 1:
            raise ValueError("a frozen prefix needs at least one frozen layer below the trained ones")
        self.model = model
        self.layer = layer
        self.shard = shard
        self._hidden: dict[int, torch.Tensor] = {}  # example index → (length, hidden) in the model's dtype

    @staticmethod
    def bytes_for(model: torch.nn.Module, shard: Sequence[EncodedExample]) -> int:
        """Memory the whole shard's prefixes take once every example has been seen."""
        config: Any = model.config
        element = next(model.parameters()).element_size()
        return sum(len(example.input_ids) for example in shard) * config.hidden_size * element

    def inputs_embeds(self, indices: Sequence[int], width: int) -> torch.Tensor:
        """(batch, width, hidden): the examples' cached states, right-padded with zeros."""
        rows = [self._states_of(index) for index in indices]
        padded = rows[0].new_zeros((len(rows), width, rows[0].shape[-1]))
        for row, states in enumerate(rows):
            padded[row, : states.shape[0]] = states
        return padded

    def skipping_frozen_layers(self) -> AbstractContextManager[None]:
        """Layers below ``layer`` are the identity for the forward inside (their parameters stay put)."""
        return layers_skipped_below(self.model, self.layer)

    def _states_of(self, index: int) -> torch.Tensor:
        if index not in self._hidden:
            self._hidden[index] = self._compute(self.shard[index])
        return self._hidden[index]

    @torch.no_grad()
    def _compute(self, example: EncodedExample) -> torch.Tensor:
        decoder = self.model.get_decoder()  # type: ignore[operator]
        captured: list[torch.Tensor] = []

        def capture(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            captured.append((args[0] if args else kwargs["hidden_states"]).detach())
            raise _PrefixReady

        hook = decoder.layers[self.layer].register_forward_pre_hook(capture, with_kwargs=True)
        device = next(self.model.parameters()).device
        ids = torch.tensor([example.input_ids], device=device)
        try:
            decoder(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        except _PrefixReady:
            pass
        finally:
            hook.remove()
        return captured[0][0].clone()  # (length, hidden)


class _PrefixReady(Exception):
    """Raised inside the forward once the prefix's hidden states are captured: the rest is not needed."""


@contextmanager
def layers_skipped_below(model: torch.nn.Module, layer: int) -> Iterator[None]:
    """Decoder layers below ``layer`` are the identity inside (the forward is given their output as
    ``inputs_embeds``); their parameters stay registered, so names and checkpoints do not change."""
    skipped = model.get_decoder().layers[:layer]  # type: ignore[operator]
    for module in skipped:
        module.forward = _identity
    try:
        yield
    finally:
        for module in skipped:
            del module.forward  # back to the class's forward


def _identity(hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return hidden_states


class TrainingForward:
    """The loss of a training batch: from the frozen prefix when there is one, else from the tokens."""

    def __init__(self, model: torch.nn.Module, prefix: FrozenPrefix | None) -> None:
        self.model = model
        self.prefix = prefix

    def loss(self, batch: Mapping[str, torch.Tensor], indices: Sequence[int]) -> torch.Tensor:
        if self.prefix is None:
            return answer_loss(self.model, batch)
        embeds = self.prefix.inputs_embeds(indices, batch["input_ids"].shape[1])
        with self.prefix.skipping_frozen_layers():
            return answer_loss(self.model, batch, embeds)


def training_forward(
    model: torch.nn.Module, shard: Sequence[EncodedExample], trained_names: Sequence[str], spec: ClientSpec
) -> TrainingForward:
    """The forward ``spec.frozen_prefix`` (``auto`` / ``on`` / ``off``) asks for; ValueError when ``on`` cannot hold."""
    mode, max_bytes = spec.frozen_prefix, spec.frozen_prefix_max_bytes
    if mode == "off":
        return TrainingForward(model, None)
    layer, below = lowest_trained_layer(model, trained_names)
    config: Any = model.config
    family = config.model_type
    problem = None
    if family not in PREFIX_FAMILIES:
        problem = f"model type {family!r} is not one of {', '.join(PREFIX_FAMILIES)}"
    elif layer == 0:
        problem = f"{', '.join(below[:3]) or 'layer 0'} trains below every decoder layer"
    elif FrozenPrefix.bytes_for(model, shard) > max_bytes:
        problem = (f"the shard's prefixes need {FrozenPrefix.bytes_for(model, shard) / 2**20:.0f} MiB, above "
                   f"runtime.frozen_prefix_max_mb={max_bytes / 2**20:.0f}")
    if problem is None:
        return TrainingForward(model, FrozenPrefix(model, layer, shard))
    if mode == "on":
        raise ValueError(f"runtime.frozen_prefix=on cannot be used: {problem}; set it to auto or off")
    return TrainingForward(model, None)
