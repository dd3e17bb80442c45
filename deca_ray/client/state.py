"""A client's checkpoint: its trained tensors, moments, fp32 master, RNG and sampler as (tensors, metadata).

Tensors go to safetensors and metadata to the JSON manifest (``deca_ray.checkpoint``); keys::

    param/<name>          every parameter trained so far (all that differs from x0)
    moments/<k>/{m,v}     the moments of block k (the active set, and those a persistent method keeps)
    master                the active block's fp32 x_k, when the weights are bf16
    rng/torch             torch's global RNG state
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from deca_ray.algorithm.deca import BlockMoments
from deca_ray.checkpoint import CheckpointError


@dataclass
class ClientState:
    """What restores a client exactly at an inner-step boundary."""

    trained: dict[str, torch.Tensor]
    moments: dict[int, BlockMoments]
    master: torch.Tensor | None
    active_block: int | None
    trained_blocks: list[int]
    sampler: dict
    rng: torch.Tensor
    """torch's global RNG state (set last on restore: rebuilding x0 may draw from it)."""

    def to_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"param/{name}": value for name, value in self.trained.items()}
        for block_index, state in self.moments.items():
            tensors[f"moments/{block_index}/m"] = state.m.cpu()
            tensors[f"moments/{block_index}/v"] = state.v.cpu()
        if self.master is not None:
            tensors["master"] = self.master.cpu()
        tensors["rng/torch"] = self.rng
        meta = {
            "active_block": self.active_block,
            "trained_blocks": list(self.trained_blocks),
            "moment_steps": {str(block): state.step for block, state in self.moments.items()},
            "sampler": self.sampler,
        }
        return tensors, meta

    @classmethod
    def from_checkpoint(cls, tensors: Mapping[str, torch.Tensor], meta: dict, device: torch.device) -> ClientState:
        """Inverse of ``to_checkpoint`` (moments copied onto ``device``)."""
        moments = {
            int(block): BlockMoments(
                tensors[f"moments/{block}/m"].to(device, copy=True), tensors[f"moments/{block}/v"].to(device, copy=True),
                step,
            )
            for block, step in meta["moment_steps"].items()
        }
        return cls(
            trained={name.removeprefix("param/"): value for name, value in tensors.items() if name.startswith("param/")},
            moments=moments, master=tensors.get("master"), active_block=meta["active_block"],
            trained_blocks=list(meta["trained_blocks"]), sampler=meta["sampler"], rng=tensors["rng/torch"],
        )

    @classmethod
    def parse(cls, tensors: Mapping[str, torch.Tensor], meta: dict, device: torch.device, client_index: int
              ) -> ClientState:
        """``from_checkpoint``, with a checkpoint that lacks or garbles a field refused as a ``CheckpointError``."""
        try:
            return cls.from_checkpoint(tensors, meta, device)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"client {client_index}'s checkpoint lacks or garbles {error}; delete "
                                  "that checkpoint directory to resume from the previous one") from None


class SavedMoments:
    """Moments kept per block between activations: all of them when ``persistent``, else only
    those a restore hands over to the next activation."""

    def __init__(self, persistent: bool) -> None:
        self.persistent = persistent
        self.by_block: dict[int, BlockMoments] = {}

    def for_block(self, block_index: int, fresh: Callable[[], BlockMoments]) -> BlockMoments:
        moments = self.by_block.get(block_index)
        if moments is None:
            moments = fresh()
        if self.persistent:
            self.by_block[block_index] = moments
        else:
            self.by_block.pop(block_index, None)
        return moments

    def replace(self, moments: Mapping[int, BlockMoments], active_block: int | None) -> None:
        """After a restore: the checkpoint's moments (for a non-persistent method, only the active block's)."""
        keep = moments if self.persistent else {k: v for k, v in moments.items() if k == active_block}
        self.by_block = dict(keep)


def check_fits(
    state: ClientState, client_index: int, parameters: Mapping[str, torch.Tensor], num_blocks: int,
    names_of_block: Callable[[int], Sequence[str]],
) -> None:
    """Refuse a checkpoint of another model shape before any weight is touched."""
    blocks = [b for b in (state.active_block, *state.trained_blocks, *state.moments) if b is not None]
    wrong = [f"block {b}" for b in blocks if not 0 <= b < num_blocks]
    wrong += [f"{name} {tuple(value.shape)}" + (f" (this model: {tuple(parameters[name].shape)})" if name in parameters
                                                 else " (this model has no such parameter)")
              for name, value in state.trained.items()
              if name not in parameters or tuple(value.shape) != tuple(parameters[name].shape)]
    if state.master is not None and state.active_block is not None and not wrong:
        numel = sum(parameters[name].numel() for name in names_of_block(state.active_block))
        if state.master.numel() != numel:
            wrong.append(f"master of block {state.active_block} ({state.master.numel()} values, this model: {numel})")
    if wrong:
        raise CheckpointError(f"client {client_index}'s checkpoint does not fit this model: {', '.join(wrong[:4])}; "
                              "it was written for another model or is corrupted: resume with the run's own "
                              "config.yaml or delete that checkpoint directory to resume from the previous one")
