"""Dec-Adapter: bottleneck adapters trained locally with Adam, every adapter tensor gossip-averaged.

AdapterHub's ``adapters`` package does not support the pinned transformers 5, so the adapter
is a small module here: after a layer's MLP, out + up(act(down(out))), with ``up`` initialised
to zero so training starts from the pretrained function (Houlsby et al.; Pfeiffer placement).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from deca_ray.config import AlgorithmConfig, ConfigPart
from deca_ray.methods import register
from deca_ray.methods.base import Method


class BottleneckAdapter(nn.Module):
    """x + up(gelu(down(x))): identity at initialisation."""

    def __init__(self, hidden_size: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(nn.functional.gelu(self.down(hidden)))


class AdapterShape(ConfigPart):
    """Bottleneck adapters: one after each covered layer's MLP (Pfeiffer placement)."""

    bottleneck: int = Field(32, ge=1)
    """Hidden width of the down-projection."""


class AdapterOptions(AlgorithmConfig):
    """Options of ``dec_adapter``."""

    type: Literal["dec_adapter"] = "dec_adapter"
    adapter: AdapterShape = AdapterShape()


@register
class DecAdapter(Method):
    name = "dec_adapter"
    summary = "bottleneck adapters after each covered layer's MLP, trained with Adam, gossip-averaged"
    options = AdapterOptions
    config: AdapterOptions

    def prepare_model(self, model: torch.nn.Module, layers: Sequence[int]) -> None:
        if not layers:
            raise ValueError("the blocks the schedule trains hold no transformer layer to put adapters on; "
                             "set algorithm.blocks.fixed_order to layer blocks")
        decoder_layers = _decoder_layers(model)
        config: Any = model.config
        hidden_size = int(config.hidden_size)
        for index in layers:
            layer = decoder_layers[index]
            adapter = BottleneckAdapter(hidden_size, self.config.adapter.bottleneck).to(
                dtype=next(layer.parameters()).dtype, device=next(layer.parameters()).device
            )
            layer.add_module("adapter", adapter)  # parameter names: model.layers.N.adapter.{down,up}.*
            mlp: Any = layer.mlp
            mlp.register_forward_hook(lambda _module, _inputs, output, adapter=adapter: adapter(output))

    def trainable(self, name: str) -> bool:
        return ".adapter." in name


def _decoder_layers(model: torch.nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or not all(hasattr(layer, "mlp") for layer in layers):
        raise ValueError(
            f"dec_adapter supports decoder-only models with model.layers[i].mlp (LLaMA, Qwen, Mistral); "
            f"{type(model).__name__} has another layout"
        )
    return layers
