"""Method: the few decisions that tell one decentralized training method from another.

The generic ClientWorker (``deca_ray.client``) owns the model, the data and the flat buffer of
the tensors being trained; it asks its Method

- how to change the model before training (``prepare_model``: LoRA factors, adapters),
- which parameters are trained while schedule block k is active (``trained_names``),
- the local half-step (``local_step``: Adam, SGD) and whether moments restart per block,
- how received tensors are combined (``combine``: a weighted average, or DeCAF's SVD),
- whether the signal h and BMA follow the mix (``hyper_params().variant``).

Every method walks the same schedule (rounds × blocks × inner steps), so the same config gives
every method the same number of local gradient steps. Methods that are not block-wise train
and exchange their whole trainable set at every step; the schedule's block is then only a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

import torch

from deca_ray.algorithm.blocks import BlockPartition
from deca_ray.algorithm.deca import BlockMoments, DecaHyperParams, HalfStep, local_half_step
from deca_ray.algorithm.mixing import average_states, mix
from deca_ray.config import AlgorithmConfig

Layout = Sequence[tuple[str, torch.Size]]
"""Names and shapes of the parameters packed, in order, into the flat vector a client sends."""


class Method:
    """Base: full-set Adam on the trained tensors, plain gossip averaging after every step."""

    name: ClassVar[str]
    summary: ClassVar[str]
    block_wise: ClassVar[bool] = False
    """Train only the active block, with moments that restart at each activation (DECA)."""
    gossips: ClassVar[bool] = True
    """False: no edges (W = I), nothing is sent."""
    centralised: ClassVar[bool] = False
    """True: one client holding every client's training data."""
    bma: ClassVar[bool] = False
    """Whether h and the BMA correction follow the mix (else the mix result is simply the new x)."""

    def hyper_params(self, algorithm: AlgorithmConfig) -> DecaHyperParams:
        """The inner step's hyper-parameters from the config; without BMA unless the method uses it."""
        hp = DecaHyperParams(
            lr=algorithm.lr, adam_beta1=algorithm.adam_beta1, adam_beta2=algorithm.adam_beta2, eps=algorithm.eps,
            bma_beta1=algorithm.bma_beta1, bma_beta2=algorithm.bma_beta2, variant=algorithm.variant,
            h_sign=algorithm.h_sign, h_scale=algorithm.h_scale,
        )
        return hp if self.bma else replace(hp, variant="without_bma")

    def prepare_model(self, model: torch.nn.Module, algorithm: AlgorithmConfig, layers: Sequence[int]) -> None:
        """Add the method's own modules to ``model`` (in place), on transformer ``layers`` only."""

    def trainable(self, name: str) -> bool:
        """Whether a parameter of a covered block is trained (default: all of them)."""
        return True

    def trained_names(self, partition: BlockPartition, block_index: int, covered: Sequence[int]) -> tuple[str, ...]:
        """Parameters trained while schedule block ``block_index`` is active (``covered``: every block
        the schedule activates)."""
        blocks = [block_index] if self.block_wise else sorted(covered)
        return tuple(
            name for k in blocks for name in partition.blocks[k].parameter_names if self.trainable(name)
        )

    def new_moments(self, x: torch.Tensor) -> BlockMoments:
        return BlockMoments.zeros_like(x)

    def local_step(self, x: torch.Tensor, grad: torch.Tensor, moments: BlockMoments, hp: DecaHyperParams) -> HalfStep:
        return local_half_step(x, grad, moments, hp)

    def combine(
        self, own: torch.Tensor, self_weight: float, neighbours: Sequence[tuple[torch.Tensor, float]], layout: Layout
    ) -> torch.Tensor:
        """x_new from this client's x½ and its neighbours' (Eq. 7 by default)."""
        return mix(own, self_weight, neighbours)

    def average(self, states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The network-average model's trained tensors (x̄ = mean of the clients' by default)."""
        return average_states(states)


def split_flat(flat: torch.Tensor, layout: Layout) -> dict[str, torch.Tensor]:
    """Views of ``flat`` shaped as the named parameters it packs."""
    views, offset = {}, 0
    for name, shape in layout:
        numel = shape.numel()
        views[name] = flat[offset : offset + numel].view(shape)
        offset += numel
    return views
