"""DECA (ALGORITHM.md) and its no-communication reference, local block-wise Adam."""

from __future__ import annotations

from dataclasses import replace

from deca_ray.algorithm.deca import DecaHyperParams
from deca_ray.config import AlgorithmConfig
from deca_ray.methods import register
from deca_ray.methods.base import Method


@register
class Deca(Method):
    name = "deca"
    summary = "block-wise Adam; the active block is gossiped every step; moments corrected by BMA"
    block_wise = True

    def hyper_params(self, algorithm: AlgorithmConfig) -> DecaHyperParams:
        return DecaHyperParams(
            lr=algorithm.lr, adam_beta1=algorithm.adam_beta1, adam_beta2=algorithm.adam_beta2, eps=algorithm.eps,
            bma_beta1=algorithm.bma_beta1, bma_beta2=algorithm.bma_beta2, variant=algorithm.variant,
            h_sign=algorithm.h_sign, h_scale=algorithm.h_scale,
        )


@register
class LocalBlockAdam(Deca):
    name = "local_block_adam"
    summary = "DECA's block-wise Adam with no communication (W = I): what gossip adds"
    gossips = False

    def hyper_params(self, algorithm: AlgorithmConfig) -> DecaHyperParams:
        # Plain block-wise Adam is the reference: with W = I, x_new = x½, and BMA would blend the
        # step itself back into the moments.
        return replace(super().hyper_params(algorithm), variant="without_bma")
