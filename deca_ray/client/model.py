"""A client's model: x0 (pretrained weights plus the method's modules) and the weights it may write.

Virtual clients in one process share the frozen base weights (``shared_base_model``); a
client's ``ClientWeights`` knows which tensors are still shared and makes one private before
writing it, so no client ever writes into weights another client reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from deca_ray.algorithm.blocks import BlockPartition, layers_of, partition_model
from deca_ray.config import AlgorithmConfig, ExperimentConfig, ModelConfig
from deca_ray.methods.base import Method
from deca_ray.models import clone_sharing_weights, load_model, seeded_rng
from deca_ray.schedule import covered_blocks


@dataclass(frozen=True)
class ClientSpec:
    """The part of the experiment config one client needs (what an actor receives)."""

    client_index: int
    model: ModelConfig
    algorithm: AlgorithmConfig
    batch_size: int
    seed: int
    pad_token_id: int
    vocab_size: int
    frozen_prefix: str = "auto"
    """``runtime.frozen_prefix``: auto / on / off."""
    frozen_prefix_max_bytes: int = 2**31

    @classmethod
    def from_config(cls, config: ExperimentConfig, client_index: int, pad_token_id: int, vocab_size: int) -> ClientSpec:
        return cls(
            client_index=client_index, model=config.model, algorithm=config.algorithm,
            batch_size=config.data.batch_size, seed=config.seed, pad_token_id=pad_token_id, vocab_size=vocab_size,
            frozen_prefix=config.runtime.frozen_prefix,
            frozen_prefix_max_bytes=int(config.runtime.frozen_prefix_max_mb * 2**20),
        )


def client_device() -> torch.device:
    """An actor sees only its own GPU (Ray sets CUDA_VISIBLE_DEVICES), so "cuda" is that one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def block_partition(model: torch.nn.Module, algorithm: AlgorithmConfig) -> BlockPartition:
    """The configured partition of ``model``'s parameters (identical on every client)."""
    blocks = algorithm.blocks
    return partition_model(
        model, layers_per_block=blocks.layers_per_block, include_embeddings=blocks.include_embeddings,
        include_final_norm=blocks.include_final_norm, include_lm_head=blocks.include_lm_head,
        groups=[(group.name, group.pattern) for group in blocks.groups],
    )


def prepare_for_method(model: torch.nn.Module, algorithm: AlgorithmConfig, method: Method) -> None:
    """Add ``method``'s own modules (LoRA, adapters) to the layers DECA's schedule covers, in place."""
    base = block_partition(model, algorithm)
    covered = covered_blocks(base.num_blocks, algorithm)
    method.prepare_model(model, layers_of([name for k in covered for name in base.blocks[k].parameter_names]))


def shared_base_model(spec: ClientSpec) -> PreTrainedModel:
    """The pretrained weights once, on this process's device, for clients built with ``shared_base``."""
    return _on_client_device(load_model(spec.model, spec.vocab_size, seed=spec.seed))


def initial_model(spec: ClientSpec, method: Method, shared_base: PreTrainedModel | None = None) -> PreTrainedModel:
    """x0: the pretrained model plus the method's own modules, identical on every client, frozen."""
    model = clone_sharing_weights(shared_base) if shared_base is not None else load_model(
        spec.model, spec.vocab_size, seed=spec.seed
    )
    with seeded_rng(spec.seed):  # the same LoRA / adapter initialisation on every client
        prepare_for_method(model, spec.algorithm, method)
    return _on_client_device(model)


def _on_client_device(model: PreTrainedModel) -> PreTrainedModel:
    """Moved to this process's device and frozen (in place: ``Module.to`` returns the module itself)."""
    torch.nn.Module.to(model, client_device())  # transformers' decorated ``.to`` has no usable signature for mypy
    model.requires_grad_(False)
    return model


class ClientWeights:
    """A model's parameters by name, written only through here (shared tensors are made private first)."""

    def __init__(self, model: torch.nn.Module, shared: bool) -> None:
        self.parameters = dict(model.named_parameters())
        self._shared: set[str] = set(self.parameters) if shared else set()
        # Fixed after construction; summed once rather than in every half-step's metrics.
        self.total_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.element_size = next(model.parameters()).element_size()

    def take(self, names: Sequence[str]) -> list[torch.nn.Parameter]:
        """The named parameters, about to be trained: from now on this client's own."""
        self._shared.difference_update(names)
        return [self.parameters[name] for name in names]

    def snapshot(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Detached CPU copies, by name."""
        return {name: self.parameters[name].detach().cpu().clone() for name in names}

    def load(self, state: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, value in state.items():
                parameter = self.parameters[name]
                if name in self._shared:  # never write into weights other clients read
                    parameter.data = value.to(parameter.device, parameter.dtype, copy=True)
                    self._shared.discard(name)
                else:
                    parameter.copy_(value)

    @contextmanager
    def swapped_in(self, state: Mapping[str, torch.Tensor] | None) -> Iterator[None]:
        """``state`` (e.g. x̄) loaded for the duration of the block, then this client's own weights again."""
        if state is None:
            yield
            return
        own = self.snapshot(list(state))
        self.load(state)
        try:
            yield
        finally:
            self.load(own)
