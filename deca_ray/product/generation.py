"""Generate text from a Hugging Face model directory: chat template when the tokenizer has one, greedy by default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from deca_ray.errors import ExportError


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: greedy unless ``temperature`` > 0, then sampled (seeded when ``seed`` is set)."""

    prompt: str
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int | None = None
    chat_template: bool = True
    """Wrap the prompt as one user turn of the tokenizer's chat template, when it has one."""


def generate(model_dir: Path, request: GenerationRequest) -> str:
    """The model's continuation of the prompt (new tokens only, special tokens dropped)."""
    if request.max_new_tokens < 1:
        raise ExportError("--max-new-tokens must be at least 1")
    if request.temperature < 0:
        raise ExportError("--temperature must be >= 0 (0: greedy)")
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"{model_dir} is not a Hugging Face model directory (no config.json); export a run "
                          "first: deca-ray export RUN_DIR --out DIR")
    transformers_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    inputs = _encode(tokenizer, request)
    sampled = request.temperature > 0
    if sampled and request.seed is not None:
        torch.manual_seed(request.seed)
    options = {"do_sample": True, "temperature": request.temperature} if sampled else {"do_sample": False}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=request.max_new_tokens, pad_token_id=pad, **options)
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    return str(tokenizer.decode(new_tokens, skip_special_tokens=True))


def _encode(tokenizer, request: GenerationRequest) -> dict[str, torch.Tensor]:
    if request.chat_template and tokenizer.chat_template:
        return dict(tokenizer.apply_chat_template(
            [{"role": "user", "content": request.prompt}], add_generation_prompt=True, return_dict=True,
            return_tensors="pt",
        ))
    return dict(tokenizer(request.prompt, return_tensors="pt"))
