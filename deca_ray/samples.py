"""Sample generations of an instruction-tuning run: a fixed set of held-out prompts, answered greedily
by x0 before training and by the network-average model x̄ after it, for MLflow's table view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from deca_ray.config import ExperimentConfig
from deca_ray.data.types import EncodedExample, PreparedData


def table_file(when: str) -> str:
    """The MLflow table artifact of ``before`` or ``after``: one file each, logged once (MLflow's append
    re-reads a table with type inference, which turns an answer like "36." into the number 36.0)."""
    return f"sample_generations_{when}.json"


def sample_prompts(data: PreparedData, count: int) -> list[EncodedExample]:
    """The first ``count`` held-out examples: the same prompts before and after training, and on resume."""
    return list(data.test[:count]) if data.task == "instruction" else []


def generate_rows(
    config: ExperimentConfig, state: Mapping[str, torch.Tensor], tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[EncodedExample], when: str,
) -> dict[str, list]:
    """x0 + ``state`` (the run's own model, method modules included) answers each prompt greedily."""
    from deca_ray.product.assemble import network_model

    model = network_model(config, state, tokenizer).eval()
    rows: dict[str, list] = {"when": [], "prompt": [], "reference": [], "generation": []}
    with torch.inference_mode():
        for example in examples:
            prompt = torch.tensor([example.input_ids[: example.num_prompt_tokens]])
            output = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                    max_new_tokens=config.evaluation.sample_max_new_tokens,
                                    pad_token_id=int(tokenizer.pad_token_id),
                                    eos_token_id=_end_of_answer(example, tokenizer))
            rows["when"].append(when)
            rows["prompt"].append(tokenizer.decode(prompt[0], skip_special_tokens=True))
            rows["reference"].append(tokenizer.decode(list(example.input_ids[example.num_prompt_tokens:]),
                                                      skip_special_tokens=True))
            rows["generation"].append(tokenizer.decode(output[0, prompt.shape[1]:], skip_special_tokens=True))
    return rows


def _end_of_answer(example: EncodedExample, tokenizer: PreTrainedTokenizerBase) -> int:
    """The token every encoded answer ends with (the chat template's end of turn), else the tokenizer's EOS."""
    return example.input_ids[-1] if len(example.input_ids) > example.num_prompt_tokens else int(tokenizer.eos_token_id)
