"""One seed's held-out examples, cut into the suite's validation and test splits, with x0's states for scoring.

``data.test_size`` examples are held out by deca_ray itself (stratified, deduplicated before the
split, in *stratified order*: any prefix keeps the labels' proportions, and so does what follows a
prefix). None of them is trained on. The suite cuts them once more: the first ``validation_size``
choose learning rates, the rest is the test split, whose first ``client_examples`` score the
clients' own models. The held-out split is drawn from ``[seed, split stream]``: the same examples
for every method of a seed (so differences pair), different examples on each seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from benchmarks.quality.scoring import PrefixStates, score_x0
from deca_ray.config import ExperimentConfig
from deca_ray.data.prepare import prepare_data
from deca_ray.data.types import EncodedExample, PreparedData
from deca_ray.models import load_tokenizer
from deca_ray.product.assemble import network_model
from deca_ray.product.evaluation import with_overrides

logger = logging.getLogger(__name__)


@dataclass
class HeldOut:
    """The held-out examples of one seed, x0's label scores on them and the states entering ``states.layer``."""

    examples: list[EncodedExample]
    label_answer_ids: list[tuple[int, ...]]
    label_words: list[str]
    states: PrefixStates
    x0_sums: torch.Tensor
    """x0's summed label log-likelihoods: (num_examples, num_labels)."""
    digest: str
    """Of the examples, labels, model and layer: results scored on different held-out sets never pair."""
    score_s: float
    """Time x0's full pass took (0 when read from the cache)."""

    def part(self, part: slice) -> tuple[list[EncodedExample], PrefixStates]:
        states = PrefixStates(self.states.layer, self.states.prompts[part], self.states.labels[part])
        return self.examples[part], states

    def labels(self, part: slice) -> list[int]:
        return [example.label for example in self.examples[part]]


@dataclass(frozen=True)
class Parts:
    """Where validation, test and the clients' subset lie in the held-out examples (stratified order)."""

    validation: slice
    test: slice
    clients: slice

    @classmethod
    def of(cls, validation_size: int, client_examples: int, num_held_out: int) -> Parts:
        if not 0 < validation_size < num_held_out:
            raise ValueError(f"validation_size {validation_size} leaves no test split of {num_held_out} held out")
        return cls(slice(0, validation_size), slice(validation_size, num_held_out),
                   slice(validation_size, min(num_held_out, validation_size + client_examples)))


class HeldOutCache:
    """``HeldOut`` per (seed, data, model): in memory, and on disk under ``directory`` (x0's pass is minutes)."""

    def __init__(self, directory: Path, layer: int) -> None:
        self.directory = directory
        self.layer = layer
        self._held: dict[str, HeldOut] = {}

    def get(self, config: ExperimentConfig) -> HeldOut:
        tokenizer = load_tokenizer(config.model)
        # The held-out split does not depend on clients or graph: one IID client cannot fail a partition check.
        data = prepare_data(with_overrides(config.model_dump(mode="json"), ()), tokenizer)
        if data.task != "classification":
            raise ValueError(f"the quality suite scores labels; data.task is {data.task!r}")
        digest = _digest(config, self.layer, data.test, data.label_answer_ids)
        if digest not in self._held:
            self._held[digest] = self._load(digest, data) or self._compute(config, tokenizer, data, digest)
        return self._held[digest]

    def _path(self, digest: str) -> Path:
        return self.directory / f"x0-states-{digest[:20]}.pt"

    def _load(self, digest: str, data: PreparedData) -> HeldOut | None:
        path = self._path(digest)
        if not path.is_file():
            return None
        saved = torch.load(path, weights_only=True)
        states = PrefixStates(saved["layer"], saved["prompts"], saved["labels"])
        return HeldOut(list(data.test), list(data.label_answer_ids), list(data.label_words), states, saved["sums"],
                       digest, 0.0)

    def _compute(self, config: ExperimentConfig, tokenizer: PreTrainedTokenizerBase, data: PreparedData,
                 digest: str) -> HeldOut:
        logger.info("x0 of seed %d: scoring %d held-out examples and keeping the states entering layer %d",
                    config.seed, len(data.test), self.layer)
        started = time.perf_counter()
        x0 = network_model(config, {}, tokenizer)
        sums, states = score_x0(x0, data.test, data.label_answer_ids, self.layer)
        seconds = time.perf_counter() - started
        self.directory.mkdir(parents=True, exist_ok=True)
        staged = self._path(digest).with_suffix(".tmp")
        torch.save({"layer": states.layer, "prompts": states.prompts, "labels": states.labels, "sums": sums}, staged)
        staged.replace(self._path(digest))
        return HeldOut(list(data.test), list(data.label_answer_ids), list(data.label_words), states, sums, digest,
                       seconds)


def _digest(config: ExperimentConfig, layer: int, examples: list[EncodedExample],
            label_answer_ids: list[tuple[int, ...]]) -> str:
    """x0 is the model config at the seed (a random tiny model depends on it); the states on the examples."""
    key = {"model": config.model.model_dump(mode="json"), "seed": config.seed, "layer": layer,
           "labels": [list(ids) for ids in label_answer_ids],
           "examples": [[list(e.input_ids), e.num_prompt_tokens, e.label] for e in examples]}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
