"""A client's checkpoint: its trained tensors, moments, fp32 master, RNG and sampler as (tensors, metadata).

Tensors go to safetensors and metadata to the JSON manifest (``deca_ray.checkpoint``); keys::

    param/<name>          every parameter trained so far (all that differs from x0)
    moments/<k>/{m,v}     the moments of block k (the active set, and those a persistent method keeps)
    master                the active block's fp32 x_k, when the weights are bf16
    rng/torch             torch's global RNG state
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from deca_ray.algorithm.deca import BlockMoments


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
