"""Encoding: chat prompts, answer-only loss, token budgets, label ids; prepare_data end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deca_ray.config import ExperimentConfig, ModelConfig
from deca_ray.data.batching import IGNORE_INDEX, collate
from deca_ray.data.encode import (
    classification_prompt,
    encode_classification,
    encode_instruction,
    fit_budget,
    label_words_for,
)
from deca_ray.data.prepare import prepare_data
from deca_ray.errors import ConfigError

WORDS = ["business", "entertainment", "politics", "sports", "tech"]
RECORD = {"title": "Shares rise", "text": "Profits at the firm rose sharply in the third quarter.", "label": "business"}
LONG_RECORD = {"title": "Long", "text": "word " * 2000, "label": "tech"}


@pytest.fixture(scope="module")
def prompt(tokenizer):
    return classification_prompt(tokenizer, WORDS, None)


def test_untruncated_example_equals_the_chat_template(tokenizer, prompt) -> None:
    instruction = "Classify the topic of the following text. Answer with one of: business, entertainment, politics, sports, tech."
    content = "Title: Shares rise\n\nText: Profits at the firm rose sharply in the third quarter."
    chat = [{"role": "system", "content": instruction}, {"role": "user", "content": content},
            {"role": "assistant", "content": "business"}]
    expected = tokenizer.apply_chat_template(chat, tokenize=True, return_dict=False)

    [example] = encode_classification([RECORD], [0], prompt, tokenizer, body_words=60, max_tokens=512)

    assert list(example.input_ids) == expected[: len(example.input_ids)]
    assert example.input_ids[example.num_prompt_tokens :] == (24406, tokenizer.eos_token_id)
    assert example.label == 0


def test_answer_ids_of_every_label_follow_the_prompt(tokenizer, prompt) -> None:
    examples = encode_classification([RECORD] * 5, range(5), prompt, tokenizer, body_words=60, max_tokens=128)

    for label, example in enumerate(examples):
        assert example.input_ids[example.num_prompt_tokens : -1] == prompt.answer_ids[label]
        assert example.input_ids[-1] == tokenizer.eos_token_id
    assert [len(ids) for ids in prompt.answer_ids] == [1, 3, 2, 2, 1]


@pytest.mark.parametrize("max_tokens", [64, 100, 128])
def test_max_tokens_truncates_the_text_not_the_answer(tokenizer, prompt, max_tokens: int) -> None:
    [short] = encode_classification([RECORD], [1], prompt, tokenizer, body_words=None, max_tokens=512)
    [example] = encode_classification([LONG_RECORD], [1], prompt, tokenizer, body_words=None, max_tokens=max_tokens)

    assert len(example.input_ids) == max_tokens
    assert example.input_ids[: len(prompt.header_ids)] == prompt.header_ids
    assert example.input_ids[example.num_prompt_tokens - len(prompt.footer_ids) :] == short.input_ids[short.num_prompt_tokens - len(prompt.footer_ids) :]


def test_body_words_keeps_the_first_words(tokenizer, prompt) -> None:
    [cut] = encode_classification([LONG_RECORD], [4], prompt, tokenizer, body_words=10, max_tokens=512)
    [full] = encode_classification([LONG_RECORD], [4], prompt, tokenizer, body_words=None, max_tokens=512)

    assert len(cut.input_ids) < len(full.input_ids)
    assert tokenizer.decode(cut.input_ids).count("word") == 10


def test_budget_too_small_for_the_template_says_what_to_raise(tokenizer, prompt) -> None:
    with pytest.raises(ConfigError, match=r"data.max_tokens=32 leaves no room .* raise data.max_tokens"):
        encode_classification([RECORD], [0], prompt, tokenizer, body_words=None, max_tokens=32)


def test_collate_masks_all_but_the_answer(tokenizer, prompt) -> None:
    examples = encode_classification([RECORD, LONG_RECORD], [1, 4], prompt, tokenizer, body_words=60, max_tokens=96)

    batch = collate(examples, tokenizer.pad_token_id)

    for row, example in enumerate(examples):
        answer = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX].tolist()
        assert answer == [*prompt.answer_ids[example.label], tokenizer.eos_token_id]


def test_label_words_mapping_and_its_errors() -> None:
    assert label_words_for(["pos", "neg"], {"pos": "good"}) == ["good", "neg"]
    with pytest.raises(ConfigError, match=r"unknown labels \['posit'\]"):
        label_words_for(["pos", "neg"], {"posit": "good"})
    with pytest.raises(ConfigError, match=r"distinct"):
        label_words_for(["pos", "neg"], {"pos": "neg"})


# --------------------------------------------------------------------------- instruction data


def test_instruction_loss_is_on_the_response(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Red."},
    ]
    records = [{"prompt": "Name a colour.", "response": "Blue.", "category": None}, {"messages": messages, "category": None}]

    simple, chat = encode_instruction(records, tokenizer, max_tokens=256)

    prompt_ids = tokenizer.apply_chat_template(messages[:3], add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(chat.input_ids[: chat.num_prompt_tokens]) == prompt_ids
    assert tokenizer.decode(chat.input_ids[chat.num_prompt_tokens :]) == "Red.<|im_end|>"
    assert tokenizer.decode(simple.input_ids[simple.num_prompt_tokens :]) == "Blue.<|im_end|>"
    assert simple.label == chat.label == -1


def test_long_instruction_prompt_loses_its_middle(tokenizer) -> None:
    record = {"prompt": "start " + "filler " * 500 + "final question?", "response": "Yes.", "category": None}

    [example] = encode_instruction([record], tokenizer, max_tokens=64)

    text = tokenizer.decode(example.input_ids)
    assert len(example.input_ids) == 64
    assert text.startswith("<|im_start|>system") and "final question?<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>" in text


def test_fit_budget_cuts_prompt_middle_then_response_tail() -> None:
    assert fit_budget([1, 2, 3], [9], 8) == ([1, 2, 3], [9])
    assert fit_budget(list(range(10)), [90, 91], 6) == ([0, 1, 8, 9], [90, 91])
    # A response longer than the budget keeps half the budget for the prompt and loses its tail.
    assert fit_budget(list(range(10)), list(range(100, 120)), 8) == ([0, 1, 8, 9], [100, 101, 102, 103])


# --------------------------------------------------------------------------- prepare_data


def _bbc_config(**overrides) -> ExperimentConfig:
    raw = {"num_clients": 4, "data": {"max_train_examples": 200, "test_size": 50}, "partition": {"alpha": 0.5}}
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return ExperimentConfig.model_validate(raw)


def test_prepare_data_on_bbc_news(tokenizer) -> None:
    config = _bbc_config()

    data = prepare_data(config, tokenizer)

    assert data.task == "classification" and data.label_words == WORDS
    assert len(data.client_shards) == 4 and all(data.client_shards)
    assert sum(len(shard) for shard in data.client_shards) == 200 == sum(data.partition_report["sizes"])
    assert len(data.test) == 50 and {example.label for example in data.test} == set(range(5))
    assert all(len(example.input_ids) <= 128 for shard in [data.test, *data.client_shards] for example in shard)
    for example in data.client_shards[0]:
        assert example.input_ids[example.num_prompt_tokens : -1] == data.label_answer_ids[example.label]
    assert data == prepare_data(config, tokenizer)
    assert data.client_shards != prepare_data(_bbc_config(seed=1), tokenizer).client_shards


def test_prepare_data_by_field_on_bbc_gives_one_label_per_client(tokenizer) -> None:
    data = prepare_data(_bbc_config(num_clients=5, partition={"type": "by_field"}), tokenizer)

    assert [sum(1 for count in counts if count) for counts in data.partition_report["counts"]] == [1] * 5


def _instruction_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "chat.jsonl"
    rows = [{"prompt": f"Question {i}?", "response": f"Answer {i}.", "kind": "ab"[i % 2]} for i in range(count)]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def test_prepare_data_on_instruction_file_by_category(tokenizer, tmp_path: Path) -> None:
    config = ExperimentConfig(
        num_clients=2,
        model=ModelConfig(cache_dir=tmp_path),
        data={"source": str(_instruction_file(tmp_path, 20)), "task": "instruction", "category_field": "kind", "test_size": 4},
        partition={"type": "by_field"},
    )

    data = prepare_data(config, tokenizer)

    assert data.partition_report["labels"] == ["a", "b"] and data.partition_report["counts"] == [[8, 0], [0, 8]]
    assert data.label_answer_ids == [] and len(data.test) == 4


def test_prepare_data_rejects_more_clients_than_training_examples(tokenizer, tmp_path: Path) -> None:
    config = ExperimentConfig(
        num_clients=9,
        model=ModelConfig(cache_dir=tmp_path),
        data={"source": str(_instruction_file(tmp_path, 10)), "task": "instruction", "test_size": 2},
        partition={"type": "iid"},
    )

    with pytest.raises(ConfigError, match=r"num_clients=9 exceeds the 8 training examples"):
        prepare_data(config, tokenizer)


def test_prepare_data_rejects_dirichlet_on_uncategorised_instructions(tokenizer, tmp_path: Path) -> None:
    config = ExperimentConfig(
        num_clients=2,
        model=ModelConfig(cache_dir=tmp_path),
        data={"source": str(_instruction_file(tmp_path, 10)), "task": "instruction", "test_size": 2},
    )

    with pytest.raises(ConfigError, match=r"set data.category_field or partition.type=iid"):
        prepare_data(config, tokenizer)
