"""On a CUDA GPU: a bf16 client trains on the device and matches fp32 Adam within bf16 rounding."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_client, tiny_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_bf16_client_runs_on_the_gpu_and_matches_fp32_adam():
    config = tiny_config(model={"dtype": "bfloat16"}, algorithm={"bma_beta1": 1.0, "bma_beta2": 1.0, "lr": 1e-2})
    client = tiny_client(config)
    assert client.device.type == "cuda" and next(client.model.parameters()).is_cuda
    client.begin_block(0)
    names = client.partition.blocks[0].parameter_names
    reference = torch.nn.Parameter(client.active_block_tensor().clone())
    adam = torch.optim.Adam([reference], lr=1e-2)
    for _ in range(3):
        client.half_step()
        grad = torch.cat([client.weights.parameters[n].grad.reshape(-1) for n in names]).float()
        client.mix([], self_weight=1.0)
        reference.grad = grad
        adam.step()
    master = client.active_block_tensor()
    assert master.is_cuda and master.dtype == torch.float32
    torch.testing.assert_close(master, reference.detach(), rtol=0, atol=1e-6)
    weights = torch.cat([client.weights.parameters[n].detach().reshape(-1) for n in names])
    assert torch.equal(weights, master.to(torch.bfloat16))


def test_gossip_between_gpu_clients_keeps_the_mean():
    config = tiny_config(model={"dtype": "bfloat16"})
    clients = [tiny_client(config, i) for i in range(2)]
    for client in clients:
        client.begin_block(1)
    halves = [client.half_step()[0] for client in clients]
    mean_half = (halves[0] + halves[1]) / 2
    for index, client in enumerate(clients):
        client.mix([(halves[1 - index].cpu(), 0.5)], self_weight=0.5)  # neighbours arrive as CPU arrays
    torch.testing.assert_close(clients[0].active_block_tensor(), mean_half)
    torch.testing.assert_close(clients[1].active_block_tensor(), mean_half)
