"""DECA's inner step: the degenerate cases of ALGORITHM.md and the open-point options."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from deca_ray.algorithm.deca import (
    BlockMoments,
    DecaHyperParams,
    HalfStep,
    apply_bma,
    consensus_signal,
    discrepancy,
    local_half_step,
)
from deca_ray.algorithm.mixing import consensus_distance, mix, mix_all
from deca_ray.data.batching import collate
from tests.helpers import PAD, tiny_client, tiny_config


def test_one_client_without_bma_equals_torch_adam_restarted_at_each_block():
    # Prepare: one client, W = [1], β1 = β2 = 1, three blocks visited twice.
    config = tiny_config(algorithm={"bma_beta1": 1.0, "bma_beta2": 1.0, "lr": 1e-2})
    client = tiny_client(config)
    oracle_model = copy.deepcopy(client.model)
    oracle_params = dict(oracle_model.named_parameters())
    sampler_twin = copy.deepcopy(client.sampler)
    order = [0, 1, 0, 1]
    # Execute
    max_diff = 0.0
    for block in order:
        client.begin_block(block)
        names = client.partition.blocks[block].parameter_names
        oracle_model.requires_grad_(False)
        params = [oracle_params[n] for n in names]
        for p in params:
            p.requires_grad_(True)
        adam = torch.optim.Adam(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8)  # restarted per block
        for _ in range(3):
            x_half, _ = client.half_step()
            client.mix([], self_weight=1.0)
            batch = collate([client.shard[i] for i in sampler_twin.next_indices()], PAD)
            adam.zero_grad()
            oracle_model(**batch).loss.backward()
            adam.step()
            for n in names:
                diff = (client.weights.parameters[n] - oracle_params[n]).abs().max().item()
                max_diff = max(max_diff, diff)
    # Assert: the parameters moved and track Adam to 1e-6
    assert max_diff <= 1e-6
    assert any(not torch.equal(a, b) for a, b in zip(client.model.parameters(), tiny_client(config).model.parameters(), strict=True))


def test_identity_mixing_makes_clients_independent():
    # Prepare: two clients mixed with W = I, and a twin of client 1 trained alone.
    config = tiny_config()
    pair = [tiny_client(config, 0), tiny_client(config, 1)]
    alone = tiny_client(config, 1)
    # Execute
    for block in (0, 1):
        for client in (*pair, alone):
            client.begin_block(block)
        for _ in range(3):
            halves = [client.half_step()[0] for client in pair]
            alone.half_step()
            for index, client in enumerate(pair):
                client.mix([(halves[1 - index], 0.0)], self_weight=1.0)
            alone.mix([], self_weight=1.0)
    # Assert
    for name, value in alone.trainable_state().items():
        torch.testing.assert_close(pair[1].trainable_state()[name], value, rtol=0, atol=0)
    assert not torch.equal(pair[0].active_block_tensor(), pair[1].active_block_tensor())


def test_doubly_stochastic_mixing_preserves_client_mean():
    # Prepare: a random symmetric doubly stochastic W (average of permutation matrices).
    generator = torch.Generator().manual_seed(0)
    n, numel = 6, 50
    permutations = [torch.eye(n)[torch.randperm(n, generator=generator)] for _ in range(4)]
    w = sum(p + p.T for p in permutations) / 8
    halves = torch.randn(n, numel, generator=generator)
    # Execute: per-client mix, as the clients do it
    mixed = torch.stack([
        mix(halves[i], float(w[i, i]), [(halves[j], float(w[i, j])) for j in range(n) if j != i])
        for i in range(n)
    ])
    # Assert
    torch.testing.assert_close(mixed.mean(dim=0), halves.mean(dim=0), atol=1e-6, rtol=0)
    torch.testing.assert_close(mixed, mix_all(w, halves), atol=1e-6, rtol=0)
    assert consensus_distance(mixed) < consensus_distance(halves)


def test_mix_does_not_modify_its_inputs():
    own, other = torch.ones(4), torch.full((4,), 3.0)
    result = mix(own, 0.5, [(other, 0.5)])
    assert torch.equal(result, torch.full((4,), 2.0))
    assert torch.equal(own, torch.ones(4)) and torch.equal(other, torch.full((4,), 3.0))


def test_consensus_distance_by_hand():
    blocks = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # mean (1, 0): each deviates by 1 → mean 1
    assert consensus_distance(blocks) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("sign", "scale", "expected"),
    [
        ("old_minus_new", "raw", [0.5, -1.0]),
        ("new_minus_old", "raw", [-0.5, 1.0]),
        ("old_minus_new", "lr", [5.0, -10.0]),
        ("old_minus_new", "unit_norm", [0.5 / 1.25**0.5, -1.0 / 1.25**0.5]),
    ],
)
def test_discrepancy_sign_and_scale(sign, scale, expected):
    hp = DecaHyperParams(lr=0.1, h_sign=sign, h_scale=scale)
    h = discrepancy(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 2.0]), hp)
    torch.testing.assert_close(h, torch.tensor(expected))


def test_unit_norm_of_zero_discrepancy_stays_zero():
    hp = DecaHyperParams(h_scale="unit_norm")
    assert torch.equal(discrepancy(torch.ones(3), torch.ones(3), hp), torch.zeros(3))


# x_k = (1, 1), x½ = (0.5, 1.5), x_new = (0.75, 1.0); v' = (4, 16) after step 1 with α2 = 0.75, ε = 0:
# √v̂' = √(v' / (1 − 0.75)) = (4, 8). Hand-computed h for every signal and scale.
X, X_HALF, X_NEW = torch.tensor([1.0, 1.0]), torch.tensor([0.5, 1.5]), torch.tensor([0.75, 1.0])
HALF = HalfStep(x_half=X_HALF, m_local=torch.zeros(2), v_local=torch.tensor([4.0, 16.0]))
STEP_NORM = (0.5**2 + 0.5**2) ** 0.5  # ‖x_k − x½‖


@pytest.mark.parametrize(
    ("signal", "scale", "expected"),
    [
        ("update", "raw", [0.25, 0.0]),
        ("update", "lr", [2.5, 0.0]),
        ("update", "unit_norm", [1.0, 0.0]),
        ("update", "gradient_units", [0.25 * 4 / 0.1, 0.0]),
        ("update", "relative_to_step", [0.25 / STEP_NORM, 0.0]),
        ("consensus_gap", "raw", [-0.25, 0.5]),
        ("consensus_gap", "lr", [-2.5, 5.0]),
        ("consensus_gap", "unit_norm", [-0.25 / 0.3125**0.5, 0.5 / 0.3125**0.5]),
        ("consensus_gap", "gradient_units", [-0.25 * 4 / 0.1, 0.5 * 8 / 0.1]),
        ("consensus_gap", "relative_to_step", [-0.25 / STEP_NORM, 0.5 / STEP_NORM]),
    ],
)
def test_consensus_signal_of_each_definition_and_scale(signal, scale, expected):
    hp = DecaHyperParams(lr=0.1, adam_beta2=0.75, eps=0.0, h_signal=signal, h_scale=scale)
    h = consensus_signal(X.clone(), HALF, X_NEW, hp, step=1)
    torch.testing.assert_close(h, torch.tensor(expected))


@pytest.mark.parametrize("signal", ["update", "consensus_gap"])
def test_the_opposite_sign_negates_every_signal(signal):
    hp = DecaHyperParams(lr=0.1, h_signal=signal, h_scale="raw")
    flipped = DecaHyperParams(lr=0.1, h_signal=signal, h_scale="raw", h_sign="new_minus_old")
    torch.testing.assert_close(consensus_signal(X, HALF, X_NEW, flipped, 1), -consensus_signal(X, HALF, X_NEW, hp, 1))


@pytest.mark.parametrize("scale", ["raw", "lr", "unit_norm", "gradient_units", "relative_to_step"])
def test_without_gossip_the_consensus_gap_is_exactly_zero(scale):
    # W = I: x_new = x½, so local minus aggregated is 0 under every scale (and BMA blends in zeros)
    hp = DecaHyperParams(lr=0.1, h_signal="consensus_gap", h_scale=scale)
    assert torch.equal(consensus_signal(X, HALF, X_HALF.clone(), hp, step=1), torch.zeros(2))


def test_gradient_units_turn_a_pure_adam_step_back_into_its_first_moment():
    # Prepare: one Adam half-step with no gossip (x_new = x½), signal = the update x_k − x½
    hp = DecaHyperParams(lr=0.01, h_signal="update", h_scale="gradient_units", eps=0.0)
    moments = BlockMoments.zeros_like(torch.zeros(3))
    x = torch.tensor([0.3, -0.2, 1.0])
    half = local_half_step(x, torch.tensor([0.5, -2.0, 0.1]), moments, hp)
    # Execute
    h = consensus_signal(x, half, half.x_half, hp, moments.step)
    # Assert: γ·m̂'/(√v̂'+ε) · (√v̂'+ε)/γ = m̂' = m' / (1 − α1)
    torch.testing.assert_close(h, half.m_local / (1 - hp.adam_beta1))


def _one_step(variant: str) -> BlockMoments:
    hp = DecaHyperParams(lr=0.1, adam_beta1=0.5, adam_beta2=0.5, bma_beta1=0.25, bma_beta2=0.5,
                         variant=variant, h_scale="raw")
    moments = BlockMoments(m=torch.tensor([1.0]), v=torch.tensor([4.0]))
    half = local_half_step(torch.tensor([0.0]), torch.tensor([3.0]), moments, hp)
    apply_bma(moments, half, h=torch.tensor([2.0]), hp=hp)
    return moments


def test_full_bma_combines_fresh_statistics_with_h():
    moments = _one_step("full")
    # m' = .5·1 + .5·3 = 2 ; v' = .5·4 + .5·9 = 6.5 ; m = .25·2 + .75·2 = 2 ; v = .5·6.5 + .5·4 = 5.25
    assert moments.m.item() == pytest.approx(2.0) and moments.v.item() == pytest.approx(5.25)
    assert moments.step == 1


def test_without_bma_keeps_fresh_statistics():
    moments = _one_step("without_bma")
    assert moments.m.item() == pytest.approx(2.0) and moments.v.item() == pytest.approx(6.5)


def test_trivial_bma_builds_persistent_moments_from_h_only():
    moments = _one_step("trivial_bma")
    # m = .25·1 + .75·2 = 1.75 (old m, not m') ; v = .5·4 + .5·4 = 4
    assert moments.m.item() == pytest.approx(1.75) and moments.v.item() == pytest.approx(4.0)


def test_half_step_is_bias_corrected_adam():
    hp = DecaHyperParams(lr=0.1, adam_beta1=0.9, adam_beta2=0.999, eps=0.0)
    moments = BlockMoments.zeros_like(torch.zeros(2))
    half = local_half_step(torch.zeros(2), torch.tensor([2.0, -0.5]), moments, hp)
    # First Adam step moves each coordinate by exactly lr·sign(g).
    torch.testing.assert_close(half.x_half, torch.tensor([-0.1, 0.1]))


def test_persistent_moments_survive_block_switches():
    config = tiny_config(algorithm={"moment_lifetime": "persistent"})
    client = tiny_client(config)
    client.begin_block(0)
    client.half_step()
    client.mix([], 1.0)
    saved = client.block.moments
    client.begin_block(1)
    client.begin_block(0)
    assert client.block.moments is saved and saved.step == 1


def test_algorithm_package_never_imports_ray_mlflow_or_pydantic():
    code = (
        "import sys, deca_ray.algorithm.blocks, deca_ray.algorithm.deca, deca_ray.algorithm.mixing, "
        "deca_ray.algorithm.topology; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow', 'pydantic')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("scale", ["gradient_units", "relative_to_step"])
def test_a_run_with_the_consensus_gap_trains_through_the_client(scale):
    from deca_ray.algorithm.topology import build_topology
    from deca_ray.reference import run_reference

    config = tiny_config(algorithm={"h_signal": "consensus_gap", "h_scale": scale})
    clients = [tiny_client(config, i) for i in range(3)]
    history = run_reference(clients, build_topology("ring", 3), config.algorithm, seed=0)
    assert all(torch.isfinite(torch.tensor(step.client_losses)).all() for step in history)
    assert clients[0].block is not None and torch.isfinite(clients[0].block.moments.v).all()
