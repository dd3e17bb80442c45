"""DECA (ALGORITHM.md) and its no-communication reference, local block-wise Adam."""

from __future__ import annotations

from deca_ray.methods import register
from deca_ray.methods.base import Method


@register
class Deca(Method):
    name = "deca"
    summary = "block-wise Adam; the active block is gossiped every step; moments corrected by BMA"
    block_wise = True
    bma = True


@register
class LocalBlockAdam(Deca):
    name = "local_block_adam"
    summary = "DECA's block-wise Adam with no communication (W = I): what gossip adds"
    gossips = False
    # Plain block-wise Adam is the reference: with W = I, x_new = x½, and BMA would blend the
    # step itself back into the moments.
    bma = False
