"""bf16 weights with an fp32 master, fp32 grads and fp32 moments for the active block only."""

from __future__ import annotations

import torch

from tests.helpers import tiny_client, tiny_config


def test_bf16_update_equals_fp32_adam_within_bf16_rounding():
    # Prepare: a bf16 client, one client (W = [1]), no BMA: the step is plain Adam on the fp32 master.
    config = tiny_config(model={"dtype": "bfloat16"}, algorithm={"bma_beta1": 1.0, "bma_beta2": 1.0, "lr": 1e-2})
    client = tiny_client(config)
    client.begin_block(1)
    names = client.partition.blocks[1].parameter_names
    master_before = client.active_block_tensor().clone()
    assert master_before.dtype == torch.float32
    # The fp32 reference: torch Adam on an fp32 copy, fed the gradient the bf16 model computed.
    reference = torch.nn.Parameter(master_before.clone())
    adam = torch.optim.Adam([reference], lr=1e-2)
    captured = {}
    original_half_step = client.half_step

    def half_step_capturing_grad():
        result = original_half_step()
        params = [client.weights.parameters[n] for n in names]
        captured["grad"] = torch.cat([p.grad.reshape(-1) for p in params]).float()
        return result

    # Execute
    for _ in range(3):
        half_step_capturing_grad()
        client.mix([], self_weight=1.0)
        reference.grad = captured["grad"]
        adam.step()
    # Assert: master == fp32 Adam; weights == master rounded to bf16; grads were bf16, moments fp32
    master = client.active_block_tensor()
    torch.testing.assert_close(master, reference.detach(), rtol=0, atol=1e-6)
    weights = torch.cat([client.weights.parameters[n].detach().reshape(-1) for n in names])
    assert weights.dtype == torch.bfloat16 and torch.equal(weights, master.to(torch.bfloat16))
    assert client.block.moments.m.dtype == torch.float32
    assert not torch.equal(master, master_before)


def test_tensor_memory_matches_the_mixed_precision_accounting():
    config = tiny_config(model={"dtype": "bfloat16"})
    client = tiny_client(config)
    client.begin_block(0)
    memory = client.tensor_memory()
    weights = sum(p.numel() for p in client.model.parameters())
    block = client.partition.blocks[0].numel
    # M (bf16 weights) + bf16 grads + fp32 master + two fp32 moments, for the active block only
    assert memory["weights"] == 2 * weights
    assert memory["total"] == 2 * weights + 2 * block + 4 * block + 8 * block
