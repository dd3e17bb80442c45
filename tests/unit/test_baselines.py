"""The baselines' update and exchange rules on small hand-checkable tensors."""

from __future__ import annotations

import torch

from deca_ray.algorithm.baselines import align_signs, decaf_mix, refactorise, sgd_half_step
from deca_ray.algorithm.deca import BlockMoments, DecaHyperParams


def test_refactorise_gives_the_best_rank_r_approximation():
    # Prepare: a matrix with known singular values 5, 3, 1 (orthogonal U, V)
    u, _ = torch.linalg.qr(torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    product = u @ torch.diag(torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64)) @ v.T
    # Execute
    b, a = refactorise(product, rank=2)
    # Assert: shapes of LoRA factors; the error is the dropped singular value (Eckart–Young)
    assert b.shape == (6, 2) and a.shape == (2, 4)
    assert torch.isclose(torch.linalg.matrix_norm(product - b @ a), torch.tensor(1.0, dtype=torch.float64))
    # ... it equals the truncated SVD, split evenly: both factors have the same singular values √5, √3
    expected = u[:, :2] @ torch.diag(torch.tensor([5.0, 3.0], dtype=torch.float64)) @ v[:, :2].T
    torch.testing.assert_close(b @ a, expected)
    torch.testing.assert_close(torch.linalg.svdvals(b), torch.linalg.svdvals(a))


def test_decaf_mix_averages_products_not_factors():
    # Prepare: two rank-1 pairs whose factor average has product 0 but whose product average does not
    b1, a1 = torch.tensor([[1.0], [0.0]]), torch.tensor([[1.0, 0.0]])
    b2, a2 = torch.tensor([[-1.0], [0.0]]), torch.tensor([[-1.0, 0.0]])
    # Execute
    b, a = decaf_mix((b1, a1), 0.5, [((b2, a2), 0.5)])
    # Assert: ½·B1A1 + ½·B2A2 = [[1, 0], [0, 0]] is rank 1, so it is reproduced exactly
    torch.testing.assert_close(b @ a, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(b1, torch.tensor([[1.0], [0.0]])), "inputs are never modified"
    averaged_factors = ((b1 + b2) / 2) @ ((a1 + a2) / 2)
    assert torch.count_nonzero(averaged_factors) == 0, "Dec-LoRA's factor average would have lost it"


def test_decaf_mix_truncates_a_sum_that_exceeds_the_rank():
    # Prepare: two rank-1 products in orthogonal directions with weights 0.75 / 0.25 → rank 2 sum
    b1, a1 = torch.tensor([[2.0], [0.0]]), torch.tensor([[1.0, 0.0]])
    b2, a2 = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0, 1.0]])
    # Execute
    b, a = decaf_mix((b1, a1), 0.75, [((b2, a2), 0.25)])
    # Assert: the rank-1 result keeps the larger component 0.75·2 = 1.5 and drops 0.25
    torch.testing.assert_close(b @ a, torch.tensor([[1.5, 0.0], [0.0, 0.0]]))


def test_sgd_half_step_is_x_minus_lr_g_and_keeps_no_state():
    hp = DecaHyperParams(lr=0.5)
    moments = BlockMoments(torch.empty(0), torch.empty(0))
    half = sgd_half_step(torch.tensor([1.0, 2.0]), torch.tensor([2.0, -4.0]), moments, hp)
    assert torch.equal(half.x_half, torch.tensor([0.0, 4.0]))
    assert moments.step == 1 and moments.m.numel() == 0


def test_align_signs_keeps_the_product_and_agrees_with_the_reference():
    b, a = torch.tensor([[1.0, 2.0], [3.0, -1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    flipped_b, flipped_a = align_signs((b * torch.tensor([-1.0, 1.0]), a * torch.tensor([[-1.0], [1.0]])), (b, a))
    torch.testing.assert_close(flipped_b @ flipped_a, b @ a)
    torch.testing.assert_close((flipped_b, flipped_a), (b, a))
