"""Update and exchange rules of the baselines DECA is compared with (ALGORITHM.md, "Baselines").

Pure tensor functions, like deca.py: the methods in ``deca_ray.methods`` wire them into a client.

- D-PSGD: a plain SGD half-step, then the same gossip mix as DECA.
- DeCAF: neighbours' LoRA products ΔW_j = B_j·A_j are averaged with the mixing weights and the
  average is re-factorised to rank r by a truncated SVD (the best rank-r approximation,
  Eckart–Young), split evenly between the factors: B = U_r·√S_r, A = √S_r·V_rᵀ. Each rank-1
  component's sign (free in an SVD) is chosen to agree with the client's own factors, so the
  factors, and the Adam moments that follow them, do not flip from one step to the next.
Dec-LoRA and Dec-Adapter need nothing new: their factors / adapter tensors are gossip-averaged
element-wise with ``mixing.mix``, each tensor separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from deca_ray.algorithm.deca import BlockMoments, DecaHyperParams, HalfStep


def sgd_half_step(x: torch.Tensor, grad: torch.Tensor, moments: BlockMoments, hp: DecaHyperParams) -> HalfStep:
    """x½ = x − γ·g (no optimizer state: the moments stay empty)."""
    moments.step += 1
    return HalfStep(x_half=x - hp.lr * grad, m_local=moments.m, v_local=moments.v)


def refactorise(product: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A) with B·A the best rank-``rank`` approximation of ``product`` (out × in)."""
    u, s, vh = torch.linalg.svd(product, full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def decaf_mix(
    own: tuple[torch.Tensor, torch.Tensor],
    self_weight: float,
    neighbours: Sequence[tuple[tuple[torch.Tensor, torch.Tensor], float]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix one LoRA pair the DeCAF way: Σ_j w_ij·B_j·A_j, re-factorised to the factors' rank.

    Factors are (B, A) with B: (out, r) and A: (r, in); inputs are never modified.
    """
    b_own, a_own = own
    product = (b_own @ a_own) * self_weight
    for (b, a), weight in neighbours:
        product.addmm_(b, a, alpha=weight)
    b_new, a_new = refactorise(product, rank=a_own.shape[0])
    return align_signs((b_new, a_new), reference=own)


def align_signs(
    factors: tuple[torch.Tensor, torch.Tensor], reference: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each rank-1 component (column of B with row of A) that points against ``reference``.

    B·A is unchanged: every flip negates both halves of one component.
    """
    (b, a), (b_ref, a_ref) = factors, reference
    agreement = (a * a_ref).sum(dim=1) + (b * b_ref).sum(dim=0)  # (r,)
    signs = torch.where(agreement < 0, -1.0, 1.0).to(a.dtype)
    return b * signs, a * signs[:, None]
