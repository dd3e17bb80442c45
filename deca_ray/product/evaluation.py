"""Held-out metrics of any model: a run directory's checkpoint, an exported or any Hugging Face directory.

The metrics are the runs' own (``deca_ray.evaluate``) on the held-out split ``prepare_data``
cuts from the data config: a run's config for a run directory, the run config saved beside an
exported model (``deca_ray.json``), or the defaults for any other model; ``--set`` overrides it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import PreTrainedModel

from deca_ray.config import ExperimentConfig, config_from_dict, merge_overrides
from deca_ray.data.prepare import prepare_data
from deca_ray.errors import ConfigError, ExportError
from deca_ray.evaluate import evaluate
from deca_ray.models import load_model, load_tokenizer
from deca_ray.product.assemble import network_model
from deca_ray.product.export import EXPORT_INFO
from deca_ray.product.run_source import AVERAGE_MODEL, ModelChoice, is_run_dir, open_run


def evaluate_path(path: Path, overrides: Sequence[str] = (), choice: ModelChoice = AVERAGE_MODEL) -> dict[str, Any]:
    """Metrics of the model at ``path`` and what they were measured on (a JSON-friendly dict)."""
    if is_run_dir(path):
        run = open_run(path)
        config = with_overrides(run.config.model_dump(mode="json"), overrides)
        tokenizer = load_tokenizer(config.model)
        model: PreTrainedModel = network_model(config, run.trained_state(choice), tokenizer)
        described = f"{choice} model of run checkpoint {run.manifest.path.name}"
    elif (path / "config.json").is_file():
        if choice != AVERAGE_MODEL:
            raise ExportError(f"--model {choice} picks a client of a run; {path} is a model directory")
        config = with_overrides(_model_dir_config(path), overrides)
        tokenizer = load_tokenizer(config.model)
        model = load_model(config.model, len(tokenizer))
        described = "model directory"
    else:
        raise ExportError(f"{path} is neither a run directory (config.yaml) nor a Hugging Face model directory "
                          "(config.json); pass runs/<run>/, an exported model or a local model folder")
    data = prepare_data(config, tokenizer)
    metrics = evaluate(model, data, config.evaluation, int(tokenizer.pad_token_id))
    examples = len(data.test[: config.evaluation.max_examples])
    return {"model": str(path), "source": described, "data": config.data.source, "examples": examples,
            "metrics": metrics}


def with_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> ExperimentConfig:
    """``raw`` with dotted ``a.b=value`` overrides merged in, validated, with one client.

    The held-out split is cut before the training pool is partitioned and does not depend on
    the clients or the graph, so evaluation asks for one client (IID, default graph): a small
    ``--data`` file then never fails a partition constraint that only training needs.
    """
    for override in overrides:
        merge_overrides(raw, _nested(override))
    raw.update(num_clients=1, partition={"type": "iid"}, topology={})
    return config_from_dict(raw)


def _model_dir_config(path: Path) -> dict[str, Any]:
    """The run config saved beside an exported model (else the defaults), pointed at ``path``."""
    info_file = path / EXPORT_INFO
    raw: dict[str, Any] = {}
    if info_file.is_file():
        try:
            raw = json.loads(info_file.read_text())["config"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ExportError(f"{info_file} is not what deca-ray export writes ({error}); delete it to evaluate "
                              "with the default data config") from None
    model = {"name": str(path.resolve())}
    if raw.get("model", {}).get("cache_dir"):
        model["cache_dir"] = raw["model"]["cache_dir"]  # where the data cache lives
    raw["model"] = model  # the directory's own tokenizer and weights, in float32 unless --set model.dtype
    return raw


def _nested(override: str) -> dict[str, Any]:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} must look like key.path=value, e.g. data.source=bbc_news")
    value: Any = yaml.safe_load(text) if text.strip() else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def format_metrics(result: dict[str, Any]) -> str:
    """The metrics as a short table, with what they were measured on."""
    lines = [f"{result['model']} ({result['source']}), {result['examples']} held-out examples of {result['data']}:"]
    lines += [f"  {name:<12}{value:>10.4f}" for name, value in result["metrics"].items()]
    return "\n".join(lines)
