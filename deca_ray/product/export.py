"""Export a run's model as a Hugging Face directory that ``AutoModelForCausalLM.from_pretrained`` loads.

The directory holds ``config.json``, safetensors weights, the tokenizer, ``generation_config.json``
and ``deca_ray.json`` (where it came from and the run's config, which ``deca-ray eval`` reads);
LoRA runs also get ``peft_adapter/`` (a peft adapter over the base model). It appears by atomic
rename: never half-written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from deca_ray.config import ExperimentConfig
from deca_ray.errors import ExportError
from deca_ray.methods import build_method
from deca_ray.models import SMOLLM2, TINY_LLAMA, load_tokenizer, packaged_smollm2_dir
from deca_ray.product.assemble import exportable_model
from deca_ray.product.atomic import atomic_directory, check_target
from deca_ray.product.run_source import AVERAGE_MODEL, ModelChoice, open_run

logger = logging.getLogger(__name__)

EXPORT_INFO = "deca_ray.json"
"""Provenance and the run's config, beside the weights (transformers ignores it)."""
ADAPTER_DIR = "peft_adapter"
RUN_MODEL_DIR = "model"
"""Where a run writes its own final network-average model, inside the run directory."""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def export_run(run_dir: Path, out: Path, choice: ModelChoice = AVERAGE_MODEL, dtype: str | None = None) -> Path:
    """Export ``choice`` (x̄ or one client's model) of the run's last checkpoint to ``out``."""
    check_target(out)  # before any heavy work: bad input writes nothing
    if dtype is not None and dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    run = open_run(run_dir)
    state = run.trained_state(choice)
    source = {**run.describe(), "model": str(choice)}
    return write_model_dir(run.config, state, out, dtype or run.config.model.dtype, source)


def save_run_model(config: ExperimentConfig, client_states: Sequence[Mapping[str, torch.Tensor]], run_dir: Path,
                   completed_steps: int) -> Path | None:
    """A finished run's network-average model into ``<run_dir>/model``; None (and a log line saying
    why) when the method's model has no plain transformers form or the directory is taken."""
    out = run_dir / RUN_MODEL_DIR
    average = build_method(config.algorithm).average([dict(state) for state in client_states])
    source = {"run_dir": str(run_dir.resolve()), "checkpoint": None, "completed_steps": completed_steps,
              "fingerprint": config.fingerprint(), "model": str(AVERAGE_MODEL)}
    try:
        return write_model_dir(config, average, out, config.model.dtype, source)
    except ExportError as error:
        logger.warning("no model directory written for this run: %s", error)
        return None


def write_model_dir(config: ExperimentConfig, state: Mapping[str, torch.Tensor], out: Path, dtype: str,
                    source: dict[str, Any]) -> Path:
    """x0 + ``state`` as a plain transformers model in ``dtype``, with tokenizer and generation config."""
    tokenizer = load_tokenizer(config.model)
    model = exportable_model(config, state, len(tokenizer))
    with atomic_directory(out) as staging:
        if isinstance(model, PeftModel):
            _save_adapter(model, config, staging / ADAPTER_DIR)
            model = model.merge_and_unload()  # W + (alpha / r)·B·A, plain Linear layers again
        model = model.to(DTYPES[dtype])  # type: ignore[arg-type]  # transformers types .to() for its own wrapper
        _set_special_tokens(model, tokenizer)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        info = {"source": source, "dtype": dtype, "method": config.algorithm.type,
                "config": config.model_dump(mode="json")}
        (staging / EXPORT_INFO).write_text(json.dumps(info, indent=2, default=str))
    logger.info("wrote the %s model (%s, %s) to %s", source.get("model"), config.algorithm.type, dtype, out)
    return out


def _save_adapter(peft_model: PeftModel, config: ExperimentConfig, directory: Path) -> None:
    """The LoRA factors as a peft adapter directory (``PeftModel.from_pretrained(base, directory)``)."""
    peft_model.peft_config["default"].base_model_name_or_path = _base_model_reference(config)
    peft_model.save_pretrained(str(directory), save_embedding_layers=False)  # embeddings are never LoRA targets


def _base_model_reference(config: ExperimentConfig) -> str:
    """What the adapter applies to: a hub id or a local path (the tiny preset is a seeded random model)."""
    if config.model.name == SMOLLM2:
        return str(packaged_smollm2_dir(config.model))
    if config.model.name == TINY_LLAMA:
        return f"{TINY_LLAMA} (random, seed {config.seed}: use the merged model beside this adapter)"
    return config.model.name


def _set_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """The tokenizer's special tokens in the model config and a greedy generation config, so
    ``generate`` stops at the end of the turn (the tiny preset's LlamaConfig has its own defaults)."""
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name)
        if value is not None:
            setattr(model.config, name, value)
    generation = GenerationConfig.from_model_config(model.config)
    generation.do_sample = False
    model.generation_config = generation
