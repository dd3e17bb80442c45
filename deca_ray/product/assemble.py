"""Rebuild a run's model from its config and trained tensors: as the run held it, or as plain transformers weights.

x0 is rebuilt exactly as every client built it (same loader, seed and method modules), and the
trained tensors are loaded over it. For export the model must be one transformers knows:

- full-parameter methods (DECA, D-Adam, ...) change only weights the model already has;
- LoRA methods (dec_lora, decaf) become a peft ``PeftModel`` whose factors are merged into the
  weights by peft's ``merge_and_unload`` (the caller can save the adapter first);
- bottleneck adapters (dec_adapter) add x + up(gelu(down(x))) after each MLP: nonlinear, so
  they do not fold into Llama's weights, and export refuses them (``deca-ray eval RUN_DIR``
  still evaluates such a run).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from deca_ray.client import ClientSpec, initial_model, prepare_for_method
from deca_ray.config import ExperimentConfig
from deca_ray.errors import ExportError
from deca_ray.methods import build_method
from deca_ray.models import load_model, model_skeleton, seeded_rng


def network_model(
    config: ExperimentConfig, state: Mapping[str, torch.Tensor], tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel:
    """x0 with the method's modules (LoRA, adapters) and ``state`` loaded: the model the run evaluated."""
    spec = ClientSpec.from_config(config, 0, pad_token_id=int(tokenizer.pad_token_id), vocab_size=len(tokenizer))
    model = initial_model(spec, build_method(config.algorithm))
    load_named(model, state)
    return model


def exportable_model(
    config: ExperimentConfig, state: Mapping[str, torch.Tensor], vocab_size: int
) -> PreTrainedModel | PeftModel:
    """The run's model in float32 as a transformers model, or for LoRA runs a peft ``PeftModel``
    (merge it with ``merge_and_unload()``). ExportError for modules transformers cannot hold."""
    lora_config = _method_modules(config, vocab_size)
    fp32 = config.model.model_copy(update={"dtype": "float32"})  # merge in fp32, cast when saving
    base = load_model(fp32, vocab_size, seed=config.seed)
    if lora_config is None:
        load_named(base, state)
        return base
    with seeded_rng(config.seed):  # factors no checkpoint holds start as every client's did
        peft_model = get_peft_model(base, copy.deepcopy(lora_config))
    load_named(peft_model.get_base_model(), state)  # peft keeps the injected names: ...q_proj.lora_A.default.weight
    return peft_model


def load_named(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``model``'s parameters of the same names; unknown names are an error."""
    parameters = dict(model.named_parameters())
    unknown = [name for name in state if name not in parameters]
    if unknown:
        raise ExportError(f"the checkpoint names parameters this model does not have ({unknown[:3]}...); "
                          "it was written by another model or method than the run's config.yaml says")
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)


def _method_modules(config: ExperimentConfig, vocab_size: int) -> LoraConfig | None:
    """The peft LoraConfig the method adds (None when it adds nothing); ExportError for other modules."""
    method = build_method(config.algorithm)
    plain = {name for name, _ in model_skeleton(config.model, vocab_size).named_parameters()}
    skeleton = model_skeleton(config.model, vocab_size)
    with torch.device("meta"), seeded_rng(config.seed):  # weightless: names and module types only
        prepare_for_method(skeleton, config.algorithm, method)
    added = [name for name, _ in skeleton.named_parameters() if name not in plain]
    lora_config = getattr(skeleton, "peft_config", {}).get("default")
    if lora_config is not None:
        return lora_config
    if added:
        raise ExportError(
            f"method {config.algorithm.type} adds modules transformers' {type(skeleton).__name__} has no place for "
            f"({added[0]}, ...): bottleneck adapters x + up(gelu(down(x))) after each MLP are nonlinear and cannot be "
            "merged into the model's weights, so there is no plain Hugging Face model to export. "
            "Evaluate the run itself with `deca-ray eval RUN_DIR`, or train with dec_lora / deca to export"
        )
    return None
