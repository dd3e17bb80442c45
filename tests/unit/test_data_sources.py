"""Data sources: packaged corpora, local JSON/JSONL/CSV/Parquet files, hub names, and their errors."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import datasets
import pytest

from deca_ray.config import DataConfig
from deca_ray.data.sources import deduplicate, load_records, normalise_rows
from deca_ray.errors import ConfigError, DataError

ROWS = [
    {"headline": "h0", "body": "first text", "topic": "sport"},
    {"headline": "h1", "body": "second text", "topic": "tech"},
    {"headline": "h2", "body": "third text", "topic": "sport"},
]
FIELDS = {"text_field": "body", "label_field": "topic", "title_field": "headline"}


def _write(path: Path, rows: list[dict]) -> Path:
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def _load(tmp_path: Path, path: Path, **fields: str | None) -> list[dict]:
    return load_records(DataConfig(source=str(path), **fields))


def test_bbc_news_loads_unique_articles_with_five_labels() -> None:
    records = load_records(DataConfig(source="bbc_news"))

    assert len(records) == 2127
    assert set(Counter(r["label"] for r in records)) == {"business", "entertainment", "politics", "sports", "tech"}
    assert len({(r["title"], r["text"]) for r in records}) == 2127
    assert all(r["title"] and "\n" not in r["title"] and r["text"] for r in records)


def test_fortunes_load_one_label_per_category_file() -> None:
    records = load_records(DataConfig(source="fortunes"))
    labels = Counter(r["label"] for r in records)

    assert len(labels) == 43 and "LICENSE" not in labels
    assert 15_000 < len(records) <= 15_281
    assert all(r["text"] and "\n%\n" not in r["text"] and r["title"] is None for r in records)


def test_packaged_source_rejects_instruction_task() -> None:
    with pytest.raises(ConfigError, match="data.task=classification"):
        load_records(DataConfig(source="bbc_news", task="instruction"))


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_local_file_loads_through_datasets(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"data{suffix}", ROWS)

    records = _load(tmp_path, path, **FIELDS)

    assert records == [{"title": f"h{i}", "text": row["body"], "label": row["topic"]} for i, row in enumerate(ROWS)]


def test_local_file_reads_any_split_name_and_optional_title(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 2}])

    records = load_records(DataConfig(source=str(path), split="test"))

    assert records == [{"title": None, "text": "a", "label": "1"}, {"title": None, "text": "b", "label": "2"}]


def test_class_label_integers_become_names() -> None:
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    dataset = datasets.Dataset.from_dict({"text": ["x", "y"], "label": [1, 0]}, features=features)

    records = normalise_rows(dataset, DataConfig(source="hub/name"))

    assert [r["label"] for r in records] == ["pos", "neg"]


def test_duplicates_are_dropped_keeping_the_first() -> None:
    records = [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}, {"text": "a", "label": "y"}]

    assert deduplicate(records) == records[:2]


def test_instruction_prompt_response_with_category(tmp_path: Path) -> None:
    rows = [{"q": "What is 2+2?", "a": "4", "kind": "math"}, {"q": "Hi", "a": "Hello", "kind": None}]
    path = _write(tmp_path / "chat.jsonl", rows)

    records = _load(tmp_path, path, task="instruction", prompt_field="q", response_field="a", category_field="kind")

    assert records == [
        {"prompt": "What is 2+2?", "response": "4", "category": "math"},
        {"prompt": "Hi", "response": "Hello", "category": None},
    ]


def test_instruction_messages(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    path = _write(tmp_path / "chat.jsonl", [{"messages": messages}])

    records = _load(tmp_path, path, task="instruction")

    assert records == [{"category": None, "messages": messages}]


def test_group_field_is_copied_for_by_field_partitions(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.jsonl", [{"text": "a", "label": "x", "site": 3}, {"text": "b", "label": "y", "site": 4}])

    records = load_records(DataConfig(source=str(path)), group_field="site")

    assert [r["group"] for r in records] == ["3", "4"]


# --------------------------------------------------------------------------- errors


def test_missing_file_says_no_such_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file"):
        _load(tmp_path, tmp_path / "absent.jsonl")


def test_unsupported_extension_names_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text("text\tlabel\na\tb\n")

    with pytest.raises(DataError, match=r"unsupported extension '\.tsv'.*\.jsonl"):
        _load(tmp_path, path)


def test_missing_label_field_names_the_fields_and_config_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.jsonl", ROWS)

    with pytest.raises(DataError, match=r"no field 'label' \(it has: headline, body, topic\); set data.label_field"):
        _load(tmp_path, path, text_field="body")


def test_missing_text_field_names_the_config_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.jsonl", ROWS)

    with pytest.raises(DataError, match=r"no field 'text'.*data.text_field"):
        _load(tmp_path, path, label_field="topic")


@pytest.mark.parametrize("empty", ["", "  ", None])
def test_empty_label_names_the_row(tmp_path: Path, empty: str | None) -> None:
    path = _write(tmp_path / "data.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": empty}])

    with pytest.raises(DataError, match=r"row 1 .* empty label \(field 'label'\)"):
        _load(tmp_path, path)


def test_corrupt_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_bytes(b"not a parquet file")

    with pytest.raises(DataError, match=r"cannot read data.source=.* as parquet"):
        _load(tmp_path, path)


def test_unreachable_hub_dataset_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"cannot load hub dataset data.source='no-such-org/no-such-data'"):
        load_records(DataConfig(source="no-such-org/no-such-data"))


def test_instruction_file_without_prompt_or_messages_names_the_keys(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.jsonl", [{"question": "q", "answer": "a"}])

    with pytest.raises(DataError, match=r"it has: question, answer.*data.prompt_field and data.response_field"):
        _load(tmp_path, path, task="instruction")


def test_messages_without_assistant_turn_name_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "Hi"}]}])

    with pytest.raises(DataError, match=r"row 0 .* assistant turn"):
        _load(tmp_path, path, task="instruction")


def test_a_local_file_is_read_through_a_scratch_directory_that_is_gone_afterwards(tmp_path: Path, monkeypatch) -> None:
    # Nothing lands in a shared cache, so nothing there needs cleaning (which could hit a concurrent run).
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(6)))

    records = load_records(DataConfig(source=str(path)))

    assert [r["label"] for r in records] == ["a", "b"] * 3  # read in full, from memory
    assert list(scratch.iterdir()) == []
