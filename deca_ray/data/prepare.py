"""prepare_data: records → held-out split → optional subsample → client partition → token ids."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

from deca_ray.config import ExperimentConfig
from deca_ray.data.encode import (
    ClassificationPrompt,
    classification_prompt,
    encode_classification,
    encode_instruction,
    label_words_for,
)
from deca_ray.data.partition import check_pool_size, format_partition_report, partition, partition_report
from deca_ray.data.sources import Record, load_records
from deca_ray.data.split import stratified_sample, stratified_split
from deca_ray.data.types import EncodedExample, PreparedData
from deca_ray.errors import ConfigError

logger = logging.getLogger(__name__)

NO_CATEGORY = "all"
"""Group name of instruction records without a category."""

# Independent random streams derived from config.seed, one per step.
_SPLIT_STREAM, _SUBSAMPLE_STREAM, _PARTITION_STREAM = 0, 1, 2


def prepare_data(config: ExperimentConfig, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Everything clients and the evaluator need, deterministic in ``config.seed``.

    The held-out split is stratified and taken before partitioning, so every client model is
    evaluated on the same examples; labels (or instruction categories) stratify each step.
    """
    started = time.perf_counter()
    data = config.data
    records = load_records(data, _extra_group_field(config))
    names, groups = _group_indices(records, data.task)
    train, test = _split(config, groups)
    check_pool_size(len(train), config.num_clients)
    _check_partition_has_labels(config)
    field_values = [records[i]["group"] for i in train] if "group" in records[0] else None
    parts = partition(groups[train], config.num_clients, config.partition, [config.seed, _PARTITION_STREAM], field_values)
    prompt = None
    if data.task == "classification":
        prompt = classification_prompt(tokenizer, label_words_for(names, data.label_words), data.instruction)
    train_examples = _encode(config, tokenizer, records, groups, train, prompt)
    prepared = PreparedData(
        task=data.task,
        client_shards=[[train_examples[position] for position in part] for part in parts],
        test=_encode(config, tokenizer, records, groups, test, prompt),
        label_words=list(prompt.label_words) if prompt else [],
        label_answer_ids=list(prompt.answer_ids) if prompt else [],
        partition_report=partition_report(groups[train], parts, names),
    )
    logger.info(
        "prepared %d training examples over %d clients and %d held-out in %.1f s\n%s",
        len(train), config.num_clients, len(test), time.perf_counter() - started,
        format_partition_report(prepared.partition_report),
    )
    return prepared


def _split(config: ExperimentConfig, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training pool, held-out) indices: stratified split, then the optional stratified subsample."""
    data = config.data
    train, test = stratified_split(groups, data.test_size, [config.seed, _SPLIT_STREAM])
    if data.max_train_examples is not None and data.max_train_examples < len(train):
        train = train[stratified_sample(groups[train], data.max_train_examples, [config.seed, _SUBSAMPLE_STREAM])]
    return train, test


def _extra_group_field(config: ExperimentConfig) -> str | None:
    """The raw field ``by_field`` needs copied, unless it is the label / category already loaded."""
    field = config.partition.field
    data = config.data
    if config.partition.type != "by_field" or field is None:
        return None
    built_in = data.label_field if data.task == "classification" else data.category_field
    return None if field in (built_in, "label", "category") else field


def _group_indices(records: Sequence[Record], task: str) -> tuple[list[str], np.ndarray]:
    """Sorted label (or category) names and each record's index into them."""
    if not records:
        raise ConfigError("data.source yielded no records; check data.source and data.split")
    keys = [record["label"] if task == "classification" else record["category"] or NO_CATEGORY for record in records]
    names, indices = np.unique(keys, return_inverse=True)
    return names.tolist(), indices


def _check_partition_has_labels(config: ExperimentConfig) -> None:
    kind = config.partition.type
    if config.data.task == "instruction" and kind in ("dirichlet", "shards") and config.data.category_field is None:
        raise ConfigError(
            f"partition.type={kind} splits by label, and instruction data has none; set data.category_field "
            "or partition.type=iid"
        )


def _encode(
    config: ExperimentConfig,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    groups: np.ndarray,
    indices: np.ndarray,
    prompt: ClassificationPrompt | None,
) -> list[EncodedExample]:
    """Encode ``records[indices]``: classification when a prompt is given, instruction otherwise."""
    chosen = [records[i] for i in indices]
    if prompt is None:
        return encode_instruction(chosen, tokenizer, config.data.max_tokens)
    return encode_classification(
        chosen, groups[indices].tolist(), prompt, tokenizer, config.data.body_words, config.data.max_tokens
    )
