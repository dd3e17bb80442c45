"""DECA (ALGORITHM.md) and its no-communication reference, local block-wise Adam, with their options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deca_ray.algorithm.choices import HScale, HSign, HSignal, MomentLifetime, Variant
from deca_ray.algorithm.deca import DecaHyperParams
from deca_ray.config import AlgorithmConfig
from deca_ray.methods import register
from deca_ray.methods.base import Method


class BlockWiseOptions(AlgorithmConfig):
    """Options of block-wise Adam (DECA's local optimizer)."""

    moment_lifetime: MomentLifetime = "per_activation"
    """``per_activation``: moments restart at each block activation (as BAdam); ``persistent``: kept per block."""


class DecaOptions(BlockWiseOptions):
    """DECA: block-wise Adam, gossip of the active block, and the block-wise moment approximation (BMA)."""

    type: Literal["deca"] = "deca"
    bma_beta1: float = Field(0.9, ge=0, le=1)
    """β1 (1 disables the first-moment correction)."""
    bma_beta2: float = Field(0.999, ge=0, le=1)
    """β2."""
    variant: Variant = "full"
    h_signal: HSignal = "consensus_gap"
    """What h measures: ``consensus_gap`` = x½ − x_new (local minus aggregated block: the consensus pull
    alone), or ``update`` = x_k − x_new (the whole move of the inner step). The default is the reading
    that measured best at tuned rates (BENCHMARKS.md sections Q and Q-confirm; docs/decisions.md)."""
    h_sign: HSign = "old_minus_new"
    h_scale: HScale = "gradient_units"
    """Scale of h: ``gradient_units`` ·(√v̂′ + ε)/γ, h in the units of Adam's first moment (the default);
    ``unit_norm`` one unit over the block; ``lr`` ÷γ; ``raw``; ``relative_to_step`` ÷‖x_k − x½‖."""


class LocalBlockAdamOptions(BlockWiseOptions):
    type: Literal["local_block_adam"] = "local_block_adam"


class _BlockWise(Method):
    block_wise = True

    @property
    def persistent_moments(self) -> bool:
        assert isinstance(self.config, BlockWiseOptions)
        return self.config.moment_lifetime == "persistent"


@register
class Deca(_BlockWise):
    name = "deca"
    summary = "block-wise Adam; the active block is gossiped every step; moments corrected by BMA"
    options = DecaOptions
    config: DecaOptions

    @property
    def uses_bma(self) -> bool:
        return self.config.variant != "without_bma"

    def hyper_params(self) -> DecaHyperParams:
        config = self.config
        return DecaHyperParams(
            lr=config.lr, adam_beta1=config.adam_beta1, adam_beta2=config.adam_beta2, eps=config.eps,
            bma_beta1=config.bma_beta1, bma_beta2=config.bma_beta2, variant=config.variant,
            h_signal=config.h_signal, h_sign=config.h_sign, h_scale=config.h_scale,
        )


@register
class LocalBlockAdam(_BlockWise):
    # Plain block-wise Adam is the reference: with W = I, x_new = x½, and BMA would blend the
    # step itself back into the moments.
    name = "local_block_adam"
    summary = "DECA's block-wise Adam with no communication (W = I): what gossip adds"
    options = LocalBlockAdamOptions
    gossips = False
