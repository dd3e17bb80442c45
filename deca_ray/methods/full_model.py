"""Full-model references: every trained parameter is stepped and gossiped at every inner step.

"Full" means the whole region DECA's schedule covers (all blocks, or ``blocks.fixed_order``'s),
trained at once, so these runs differ from DECA only in what is active and what is sent.
"""

from __future__ import annotations

import torch

from deca_ray.algorithm.baselines import sgd_half_step
from deca_ray.algorithm.deca import BlockMoments, DecaHyperParams, HalfStep
from deca_ray.methods import register
from deca_ray.methods.base import Method


@register
class DecentralizedAdam(Method):
    name = "dadam"
    summary = "full-model Adam, full model gossiped every step (memory and traffic upper reference)"


@register
class DecentralizedSgd(Method):
    name = "dsgd"
    summary = "D-PSGD: full-model SGD, full model gossiped every step"

    def new_moments(self, x: torch.Tensor) -> BlockMoments:
        empty = x.new_empty(0, dtype=torch.float32)
        return BlockMoments(empty, empty.clone())

    def local_step(self, x: torch.Tensor, grad: torch.Tensor, moments: BlockMoments, hp: DecaHyperParams) -> HalfStep:
        return sgd_half_step(x, grad, moments, hp)


@register
class CentralizedAdam(Method):
    name = "centralized_adam"
    summary = "one model, full-model Adam on every client's training data (quality upper reference)"
    centralised = True
    gossips = False
