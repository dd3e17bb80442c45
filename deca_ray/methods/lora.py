"""Dec-LoRA and DeCAF: LoRA factors (peft) trained locally with Adam, then gossiped.

Both put rank-r factors on ``algorithm.lora.target_modules`` of the layers DECA's schedule
covers. Dec-LoRA averages A and B element-wise, each separately; DeCAF averages the products
B·A and re-factorises them by truncated SVD. Both send the factors (r·(in + out) numbers per
module): a DeCAF receiver forms its neighbours' products itself, the same arithmetic as
receiving products, for r·(in + out) numbers instead of in·out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from deca_ray.algorithm.baselines import decaf_mix
from deca_ray.algorithm.blocks import layer_of
from deca_ray.config import AlgorithmConfig, ConfigPart
from deca_ray.methods import register
from deca_ray.methods.base import Layout, Method, split_flat


class LoraFactors(ConfigPart):
    """LoRA factors (built with peft on the layers DECA's blocks cover)."""

    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    """Scaling numerator: the update is (alpha / rank)·B·A."""
    target_modules: list[str] = ["q_proj", "v_proj"]
    """Module name suffixes that get LoRA factors (peft ``target_modules``)."""


class LoraOptions(AlgorithmConfig):
    """Options of ``dec_lora`` and ``decaf``."""

    type: Literal["dec_lora", "decaf"] = "dec_lora"
    lora: LoraFactors = LoraFactors()


@register
class DecLora(Method):
    name = "dec_lora"
    summary = "LoRA factors trained with Adam; A and B gossip-averaged separately every step"
    options = LoraOptions
    config: LoraOptions

    def prepare_model(self, model: torch.nn.Module, layers: Sequence[int]) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        lora = self.config.lora
        covered = set(layers)
        targets = [
            name for name, _ in model.named_modules()
            if any(name.endswith(f".{target}") for target in lora.target_modules) and layer_of(name) in covered
        ]
        if not targets:
            raise ValueError(
                f"no module named like {lora.target_modules} in layers {list(layers)}; "
                "set algorithm.lora.target_modules to module names of this model (e.g. q_proj, v_proj)"
            )
        # peft annotates lora_alpha as int but scales by any number (alpha / rank)
        alpha: Any = lora.alpha
        config = LoraConfig(r=lora.rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets)
        inject_adapter_in_model(config, model)

    def trainable(self, name: str) -> bool:
        return ".lora_A." in name or ".lora_B." in name


@register
class Decaf(DecLora):
    name = "decaf"
    summary = "LoRA; gossip-average the products B·A and re-factorise to rank r by truncated SVD"

    def prepare_model(self, model: torch.nn.Module, layers: Sequence[int]) -> None:
        super().prepare_model(model, layers)
        rank = self.config.lora.rank
        too_narrow = [name for name, module in model.named_modules()
                      if hasattr(module, "base_layer") and min(module.base_layer.weight.shape) < rank]
        if too_narrow:
            raise ValueError(f"algorithm.lora.rank={rank} exceeds the smaller side of {too_narrow[:3]}: the truncated "
                             "SVD cannot keep that rank; lower algorithm.lora.rank")

    def combine(
        self, own: torch.Tensor, self_weight: float, neighbours: Sequence[tuple[torch.Tensor, float]], layout: Layout
    ) -> torch.Tensor:
        mine = split_flat(own, layout)
        theirs = [(split_flat(torch.as_tensor(block), layout), weight) for block, weight in neighbours]
        mixed = torch.empty_like(own)
        out = split_flat(mixed, layout)
        for a_name in (name for name, _ in layout if ".lora_A." in name):
            b_name = a_name.replace(".lora_A.", ".lora_B.")
            b, a = decaf_mix(
                (mine[b_name], mine[a_name]), self_weight,
                [((views[b_name], views[a_name]), weight) for views, weight in theirs],
            )
            out[b_name].copy_(b)
            out[a_name].copy_(a)
        return mixed

    def average(self, states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """x̄ in DeCAF's own terms: the mean product B·A, re-factorised (averaging factors whose SVD
        signs differ between clients would cancel them)."""
        average = dict(states[0])
        weight = 1.0 / len(states)
        for a_name in (name for name in states[0] if ".lora_A." in name):
            b_name = a_name.replace(".lora_A.", ".lora_B.")
            average[b_name], average[a_name] = decaf_mix(
                (states[0][b_name], states[0][a_name]), weight,
                [((state[b_name], state[a_name]), weight) for state in states[1:]],
            )
        return average

