"""Reading configs: YAML files plus dotted ``--set a.b=c`` overrides, with errors that name each field."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from deca_ray.config.experiment import DEFAULT_METHOD, ExperimentConfig, method_options, methods_with_option
from deca_ray.errors import ConfigError


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config (or the defaults), apply ``a.b=c`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for override in overrides or []:
        _apply_override(raw, override)
    return config_from_dict(raw)


def merge_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Merge nested ``overrides`` into a raw config dict in place (sections merge, values replace)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            merge_overrides(raw[key], value)
        else:
            raw[key] = value


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a plain dict, turning pydantic errors into one ConfigError naming each field."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, _method_name(raw))) from None


def dump_config(config: ExperimentConfig) -> str:
    """The fully resolved config as YAML (what a run actually used)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; pass a path to a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a path to a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text ({error.reason} at byte {error.start}); "
                          "save it as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, not {type(raw).__name__}")
    return raw


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} must look like key.path=value, e.g. algorithm.lr=1e-4")
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"override {override!r}: {prefix} is a value, not a section")
        node = child
    try:
        node[parts[-1]] = parse_yaml(text) if text.strip() else None
    except yaml.YAMLError as error:
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise ConfigError(f"override {override!r}: the value is not valid YAML ({problem}); quote it as a string "
                          f"({key.strip()}='\"...\"') or fix its brackets / quotes") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's SafeLoader, except that a key given twice in one mapping is an error, not "last one wins"."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"the key {key!r} appears twice (first {seen[key]}); keep one", key_node.start_mark)
            seen[key] = f"on line {key_node.start_mark.line + 1}"
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def _method_name(raw: dict[str, Any]) -> str:
    algorithm = raw.get("algorithm")
    return str(algorithm.get("type", DEFAULT_METHOD)) if isinstance(algorithm, dict) else DEFAULT_METHOD


def _describe(error: ValidationError, method: str) -> str:
    lines = ["invalid configuration:"]
    for item in error.errors():
        loc = item["loc"]
        path = ".".join(str(part) for part in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key{_unknown_key_hint(loc, method)}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"  {path}: {message}")
    return "\n".join(lines)


def _unknown_key_hint(loc: tuple[Any, ...], method: str) -> str:
    if loc[0] == "algorithm" and len(loc) == 2:
        owners = methods_with_option(str(loc[-1]))
        if owners:
            return f" for method {method!r}: it is an option of {', '.join(owners)}"
        return f" for method {method!r}{_suggestion(loc, method)}"
    return _suggestion(loc, method)


def _suggestion(loc: tuple[Any, ...], method: str) -> str:
    names = _field_names_at(loc[:-1], method)
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; valid keys here: {', '.join(sorted(names))}" if names else ""


def _field_names_at(loc: tuple[Any, ...], method: str) -> list[str]:
    model: type[BaseModel] = ExperimentConfig
    for part in loc:
        if model is ExperimentConfig and part == "algorithm":
            try:
                model = method_options(method)
            except ValueError:
                return []
            continue
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
