"""The DECA inner step on one client's active block, as flat fp32 vectors.

One inner step (ALGORITHM.md, paper Eqs. 6-7), with symbols as in the paper::

    m'  = α1·m + (1−α1)·g ;  v' = α2·v + (1−α2)·g⊙g        # fresh local-gradient statistics
    x½  = x − γ·m̂'/(sqrt(v̂')+ε)                            # local Adam half-step (Eq. 6)
    x_new = Σ_j w_ij·x½_j                                    # gossip mix (Eq. 7), see mixing.py
    h   = consensus_signal(x, x½, x_new)                     # x − x_new or x½ − x_new, signed, scaled
    m   = β1·m' + (1−β1)·h ;  v = β2·v' + (1−β2)·h⊙h       # block-wise moment approximation (BMA)

Variants: ``without_bma`` keeps m = m', v = v' (β1 = β2 = 1); ``trivial_bma`` builds the
persistent moments from h alone and lets the gradient enter only this step's copy (QG-Adam).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deca_ray.algorithm.choices import H_SCALES, H_SIGNALS, H_SIGNS, VARIANTS


@dataclass(frozen=True)
class DecaHyperParams:
    """Per-client hyper-parameters of the inner step."""

    lr: float = 5e-5  # γ
    adam_beta1: float = 0.9  # α1
    adam_beta2: float = 0.999  # α2
    eps: float = 1e-8  # ε
    bma_beta1: float = 0.9  # β1
    bma_beta2: float = 0.999  # β2
    variant: str = "full"
    h_signal: str = "consensus_gap"
    h_sign: str = "old_minus_new"
    h_scale: str = "gradient_units"

    def __post_init__(self) -> None:
        for value, allowed, name in (
            (self.variant, VARIANTS, "variant"),
            (self.h_signal, H_SIGNALS, "h_signal"),
            (self.h_sign, H_SIGNS, "h_sign"),
            (self.h_scale, H_SCALES, "h_scale"),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {allowed}")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ValueError("adam betas must lie in [0, 1) so that bias correction is defined")


@dataclass
class BlockMoments:
    """First / second moments of the active block and the steps taken since they started."""

    m: torch.Tensor  # (block_numel,)
    v: torch.Tensor  # (block_numel,)
    step: int = 0

    @classmethod
    def zeros_like(cls, x: torch.Tensor) -> BlockMoments:
        return cls(torch.zeros_like(x, dtype=torch.float32), torch.zeros_like(x, dtype=torch.float32))


@dataclass(frozen=True)
class HalfStep:
    """Result of the local half-step: what is sent, and the fresh statistics BMA combines with h."""

    x_half: torch.Tensor  # x½, sent to neighbours; never mutated afterwards
    m_local: torch.Tensor  # m'
    v_local: torch.Tensor  # v'


def local_half_step(x: torch.Tensor, grad: torch.Tensor, moments: BlockMoments, hp: DecaHyperParams) -> HalfStep:
    """Paper Eq. 6: Adam statistics from this step's gradient, then one Adam step from x.

    Advances ``moments.step``; ``moments.m`` / ``moments.v`` change only in ``apply_bma``.
    """
    moments.step += 1
    # Same operation order as torch.optim.Adam, so the degenerate case matches it bit for bit.
    m_local = torch.lerp(moments.m, grad, 1 - hp.adam_beta1)  # α1·m + (1−α1)·g
    v_local = (moments.v * hp.adam_beta2).addcmul_(grad, grad, value=1 - hp.adam_beta2)
    bias1 = 1 - hp.adam_beta1**moments.step
    denom = adam_denominator(v_local, moments.step, hp)
    x_half = torch.addcdiv(x, m_local, denom, value=-hp.lr / bias1)
    return HalfStep(x_half=x_half, m_local=m_local, v_local=v_local)


def adam_denominator(v_local: torch.Tensor, step: int, hp: DecaHyperParams) -> torch.Tensor:
    """sqrt(v̂') + ε after ``step`` steps: what the Adam half-step divides m̂' by."""
    bias2_sqrt = (1 - hp.adam_beta2**step) ** 0.5
    return (v_local.sqrt() / bias2_sqrt).add_(hp.eps)


def consensus_signal(
    x: torch.Tensor, half: HalfStep, x_new: torch.Tensor, hp: DecaHyperParams, step: int,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """h as configured (ALGORITHM.md open point 1): ``hp.h_signal`` picks x_k − x_new (``update``) or
    x½ − x_new (``consensus_gap``), then ``discrepancy`` signs and scales it. ``step``: the moments'
    step count after this half-step. ``out`` may be ``x`` itself (x_k is not needed after h)."""
    step_norm = torch.linalg.vector_norm(x - half.x_half) if hp.h_scale == "relative_to_step" else None
    denom = adam_denominator(half.v_local, step, hp) if hp.h_scale == "gradient_units" else None
    old = x if hp.h_signal == "update" else half.x_half
    return discrepancy(old, x_new, hp, out=out, denom=denom, step_norm=step_norm)


def discrepancy(
    x_old: torch.Tensor, x_new: torch.Tensor, hp: DecaHyperParams, out: torch.Tensor | None = None, *,
    denom: torch.Tensor | None = None, step_norm: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x_old − x_new`` (or its negation), scaled as ``hp.h_scale`` says.

    ``lr``: ÷γ, so if x_new = x_old − γ·d then h = d. ``unit_norm``: one unit over the block.
    ``gradient_units``: ·``denom``/γ with ``denom`` = sqrt(v̂') + ε, undoing Adam's normalisation
    (for a pure Adam step, h = m̂'). ``relative_to_step``: ÷ ``step_norm`` = ‖x_k − x½‖, the size of
    this step's own local move. ``out`` (may be ``x_old`` itself) receives h instead of a new
    tensor: one block-sized allocation less in the exchange phase.
    """
    if hp.h_sign == "old_minus_new":
        h = torch.sub(x_old, x_new, out=out)
    else:
        h = torch.sub(x_new, x_old, out=out)
    if hp.h_scale == "lr":
        return h.div_(hp.lr)
    if hp.h_scale == "unit_norm":
        return _divide_unless_zero(h, torch.linalg.vector_norm(h))
    if hp.h_scale == "gradient_units":
        if denom is None:
            raise ValueError("h_scale gradient_units needs the Adam denominator sqrt(v̂') + ε")
        return h.mul_(denom).div_(hp.lr)
    if hp.h_scale == "relative_to_step":
        if step_norm is None:
            raise ValueError("h_scale relative_to_step needs the local step's norm ‖x_k − x½‖")
        return _divide_unless_zero(h, step_norm)
    return h


def _divide_unless_zero(h: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    return h.div_(norm) if norm > 0 else h


def apply_bma(moments: BlockMoments, half: HalfStep, h: torch.Tensor | None, hp: DecaHyperParams) -> None:
    """Block-wise moment approximation after the gossip mix: update ``moments`` in place.

    The fresh statistics m', v' belong to this step only, so they are updated in place
    rather than copied (the inner step's hot path: every pass over the block counts).
    ``h`` may be None only for ``without_bma``, which does not read it.
    """
    if hp.variant == "without_bma":
        keep_local_moments(moments, half)
        return
    assert h is not None, "BMA needs the discrepancy h"
    base_m, base_v = (moments.m, moments.v) if hp.variant == "trivial_bma" else (half.m_local, half.v_local)
    moments.m = base_m.lerp_(h, 1 - hp.bma_beta1)  # β1·base + (1−β1)·h
    moments.v = base_v.mul_(hp.bma_beta2).addcmul_(h, h, value=1 - hp.bma_beta2)


def keep_local_moments(moments: BlockMoments, half: HalfStep) -> None:
    """No correction (without BMA, β1 = β2 = 1): the moments are the fresh local statistics m', v'."""
    moments.m, moments.v = half.m_local, half.v_local
