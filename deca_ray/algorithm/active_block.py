"""ActiveBlock: what one block activation trains, as one flat buffer with its optimizer state.

At activation the block's parameters are copied into one contiguous buffer and become views
of it, so the local step, the exchange and the mix each touch one tensor and nothing in the
inner step loops over parameters. Mixed precision follows BAdam: the model keeps bf16
weights, and only the active block has an fp32 master copy x_k (for fp32 models the master
*is* the weight buffer). One inner step::

    x½ = block.half_step(g, local_step, hp)     # Eq. 6 on x_k; x½ is sent, x_k kept
    x_new = Σ_j w_ij·x½_j                      # the method's combine (Eq. 7)
    block.finish_mix(x_new, hp, bma=True)      # h, BMA, then x_k ← x_new (weights follow)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from deca_ray.algorithm.deca import (
    BlockMoments,
    DecaHyperParams,
    HalfStep,
    apply_bma,
    consensus_signal,
    keep_local_moments,
)

LocalStep = Callable[[torch.Tensor, torch.Tensor, BlockMoments, DecaHyperParams], HalfStep]
"""(x_k, g, moments, hp) → the half-step: Adam (DECA), SGD..."""


class ActiveBlock:
    """The trained parameters of one activation: flat weights, fp32 master x_k, moments (m, v), pending x½."""

    def __init__(
        self, names: Sequence[str], parameters: Sequence[torch.nn.Parameter],
        moments_for: Callable[[torch.Tensor], BlockMoments],
    ) -> None:
        """``moments_for(master)``: fresh zeros, or the moments a persistent method kept for this block."""
        self.names = tuple(names)
        self.parameters = list(parameters)
        self.layout = [(name, parameter.shape) for name, parameter in zip(self.names, self.parameters, strict=True)]
        """Names and shapes packed, in order, into the flat buffer."""
        self.weights = _flatten_into_views(self.parameters)  # a new buffer: the block is now this client's own
        self.master = self.weights if self.weights.dtype == torch.float32 else self.weights.float()
        self.moments = moments_for(self.master)
        self.pending: HalfStep | None = None
        """This inner step's half-step, between ``half_step`` and ``finish_mix``."""
        for parameter in self.parameters:
            parameter.requires_grad_(True)

    @property
    def numel(self) -> int:
        return self.weights.numel()

    def gradient(self) -> torch.Tensor:
        """The block's gradient after backward, flat in fp32. # (block_numel,)"""
        return torch.cat([parameter.grad.reshape(-1) for parameter in self.parameters]).float()  # type: ignore[union-attr]

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    def half_step(self, grad: torch.Tensor, local_step: LocalStep, hp: DecaHyperParams) -> torch.Tensor:
        """The local step from x_k; returns x½ (a new tensor: the master still holds x_k)."""
        self.pending = local_step(self.master, grad, self.moments, hp)
        return self.pending.x_half

    def finish_mix(self, x_new: torch.Tensor, hp: DecaHyperParams, bma: bool) -> float:
        """h and BMA (when ``bma``), then x_k ← x_new; returns ‖x½ − x_new‖², the distance to the neighbourhood mix."""
        if self.pending is None:
            raise RuntimeError("mix() called before half_step() in this inner step")
        half, self.pending = self.pending, None
        gap_sq = float(torch.sum((half.x_half - x_new) ** 2))
        if bma:
            # h overwrites x_k in place: x_k is not needed after h, and x_new replaces it next.
            h = consensus_signal(self.master, half, x_new, hp, self.moments.step, out=self.master)
            apply_bma(self.moments, half, h, hp)
        else:
            keep_local_moments(self.moments, half)
        self.master.copy_(x_new)
        if self.weights is not self.master:
            self.weights.copy_(self.master)  # round the fp32 master into the bf16 weights the model uses
        return gap_sq

    def separate_master(self) -> torch.Tensor | None:
        """The fp32 master when it is not the weights themselves (bf16 weights alone lose its low bits)."""
        return None if self.master is self.weights else self.master

    def release(self) -> None:
        """Freeze the parameters again (their values stay; the buffer and moments go with this object)."""
        for parameter in self.parameters:
            parameter.requires_grad_(False)
            parameter.grad = None


def _flatten_into_views(parameters: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    """Copy parameters into one contiguous buffer and make each parameter a view of it."""
    flat = torch.cat([parameter.detach().reshape(-1) for parameter in parameters])
    offset = 0
    for parameter in parameters:
        numel = parameter.numel()
        parameter.data = flat[offset : offset + numel].view_as(parameter)
        offset += numel
    return flat
