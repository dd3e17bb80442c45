"""Method: the few decisions that tell one decentralized training method from another.

The generic ClientWorker (``deca_ray.client``) owns the model, the data and the flat buffer of
the tensors being trained; it asks its Method

- how to change the model before training (``prepare_model``: LoRA factors, adapters),
- which parameters are trained while schedule block k is active (``trained_names``),
- the local half-step (``local_step``: Adam, SGD) and whether moments restart per block,
- how received tensors are combined (``combine``: a weighted average, or DeCAF's SVD),
- whether the signal h and BMA follow the mix (``uses_bma``),
- which options it takes (``options``: a pydantic model extending ``AlgorithmConfig``).

Every method walks the same schedule (rounds × blocks × inner steps), so the same config gives
every method the same number of local gradient steps. Methods that are not block-wise train
and exchange their whole trainable set at every step; the schedule's block is then only a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    options: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    """The pydantic model of ``algorithm`` for this method: its own options beside the shared ones."""
    block_wise: ClassVar[bool] = False
    """Train only the active block, with moments that restart at each activation (DECA)."""
    gossips: ClassVar[bool] = True
    """False: no edges (W = I), nothing is sent."""
    centralised: ClassVar[bool] = False
    """True: one client holding every client's training data."""

    def __init__(self, config: AlgorithmConfig) -> None:
        if not isinstance(config, self.options):
            raise TypeError(f"method {self.name} takes {self.options.__name__}, not {type(config).__name__}")
        self.config = config

    @property
    def uses_bma(self) -> bool:
        """Whether h and the BMA correction follow the mix (else the mix result is simply the new x)."""
        return False

    @property
    def persistent_moments(self) -> bool:
        """Keep each trained set's moments across activations (always, for a method that is not block-wise)."""
        return not self.block_wise

    def hyper_params(self) -> DecaHyperParams:
        """The inner step's hyper-parameters: the local optimizer's (and BMA's, for a method that has it)."""
        config = self.config
        return DecaHyperParams(lr=config.lr, adam_beta1=config.adam_beta1, adam_beta2=config.adam_beta2, eps=config.eps)

    def prepare_model(self, model: torch.nn.Module, layers: Sequence[int]) -> None:
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
