"""Methods through the generic client: what each trains, sends and mixes, and the registry."""

from __future__ import annotations

import pytest
import torch

from deca_ray.algorithm.baselines import refactorise
from deca_ray.algorithm.topology import build_topology
from deca_ray.config import config_from_dict
from deca_ray.errors import ConfigError
from deca_ray.experiment import prepare_inputs
from deca_ray.methods import _REGISTRY, get_method, method_names, register
from deca_ray.methods.base import Method, split_flat
from deca_ray.reference import run_reference
from tests.helpers import tiny_client, tiny_config

ALL_METHODS = ["centralized_adam", "dadam", "dec_adapter", "dec_lora", "deca", "decaf", "dsgd", "local_block_adam"]


OWN_OPTIONS = {"dec_lora": {"lora": {"rank": 2}}, "decaf": {"lora": {"rank": 2}}, "dec_adapter": {"adapter": {"bottleneck": 4}}}


def _clients(method: str, count: int = 3, **algorithm):
    config = tiny_config(algorithm={"type": method} | OWN_OPTIONS.get(method, {}) | algorithm)
    return config, [tiny_client(config, i) for i in range(count)]


def _one_exchange(clients, weights):
    """Half-step every client, mix with ``weights`` (n × n); returns each client's x½ as named views."""
    for client in clients:
        client.begin_block(0)
    halves = [client.half_step()[0].clone() for client in clients]
    for i, client in enumerate(clients):
        client.mix([(halves[j], weights[i][j]) for j in range(len(clients)) if j != i], weights[i][i])
    return [split_flat(half, clients[0].block.layout) for half in halves]


RING3 = [[1 / 3] * 3] * 3  # Metropolis–Hastings weights of a 3-ring


def test_every_baseline_is_registered_by_name():
    assert method_names() == ALL_METHODS


def test_unknown_method_names_the_closest_one():
    with pytest.raises(ConfigError, match=r"unknown method 'declora'; did you mean 'dec_lora'\?"):
        get_method("declora")


def test_dec_lora_trains_and_averages_a_and_b_separately():
    # Prepare: 3 clients with LoRA on q/v of every covered layer
    _, clients = _clients("dec_lora")
    x0 = clients[0].trainable_state()
    # Execute
    halves = _one_exchange(clients, RING3)
    # Assert: only LoRA factors are trained, and each factor is the plain average of the neighbours' factors
    names = clients[0].block.names
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert set(x0) == set(names)
    state = clients[0].trainable_state()
    for name in names:
        torch.testing.assert_close(state[name], sum(h[name] for h in halves) / 3)
    assert clients[0].block_bytes(0) == sum(h.numel() for h in halves[0].values()) * 4


def test_decaf_mixes_lora_products_and_refactorises_them():
    _, clients = _clients("decaf")
    halves = _one_exchange(clients, RING3)
    state = clients[1].trainable_state()
    for a in (n for n in clients[1].block.names if ".lora_A." in n):
        b = a.replace(".lora_A.", ".lora_B.")
        best_b, best_a = refactorise(sum(h[b] @ h[a] for h in halves) / 3, rank=2)
        torch.testing.assert_close(state[b] @ state[a], best_b @ best_a, rtol=1e-4, atol=1e-6)
        assert state[a].shape[0] == 2, "the factors keep rank r"


def test_dec_adapter_starts_as_the_pretrained_function_and_averages_every_adapter_tensor():
    config, clients = _clients("dec_adapter")
    plain = tiny_client(tiny_config())
    batch = torch.tensor([[1, 2, 3, 4, 5]])
    torch.testing.assert_close(clients[0].model(input_ids=batch).logits, plain.model(input_ids=batch).logits)
    halves = _one_exchange(clients, RING3)
    names = clients[2].block.names
    layers = config.model.tiny.num_layers
    assert len(names) == layers * 4 and all(".adapter." in name for name in names)  # down/up weight + bias
    state = clients[2].trainable_state()
    for name in names:
        torch.testing.assert_close(state[name], sum(h[name] for h in halves) / 3)


@pytest.mark.parametrize("method", ["dadam", "dsgd"])
def test_full_model_methods_train_every_covered_parameter_at_every_step(method):
    _, clients = _clients(method, count=1)
    client = clients[0]
    client.begin_block(0)
    everything = set(client.partition.blocks[0].parameter_names) | set(client.partition.blocks[1].parameter_names)
    assert set(client.block.names) == everything
    client.half_step(), client.mix([], 1.0)
    moments = client.block.moments
    client.begin_block(1)  # a block switch keeps the buffer and the optimizer state
    assert client.block.moments is moments and moments.step == 1
    assert client.block_bytes(0) == client.block_bytes(1) == client.partition.trainable_numel * 4


def test_dsgd_keeps_no_optimizer_state_and_dadam_keeps_adams():
    (_, [sgd]), (_, [adam]) = _clients("dsgd", count=1), _clients("dadam", count=1)
    for client in (sgd, adam):
        client.begin_block(0)
    assert sgd.tensor_memory()["moments"] == 0
    assert adam.tensor_memory()["moments"] == 2 * 4 * adam.partition.trainable_numel


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_takes_the_same_local_steps_and_lowers_nothing_to_nan(method):
    config, clients = _clients(method)
    history = run_reference(clients, build_topology("ring", 3), config.algorithm, seed=0)
    deca_config = tiny_config()
    assert len(history) == config.algorithm.rounds * 2 * deca_config.algorithm.inner_steps
    assert all(torch.isfinite(torch.tensor(m.client_losses)).all() for m in history)


def _bbc_config(method: str):
    return config_from_dict({
        "num_clients": 3, "model": {"name": "tiny-llama"}, "algorithm": {"type": method},
        "data": {"max_train_examples": 30, "test_size": 6, "max_tokens": 48, "body_words": 10},
        "topology": {"type": "complete"},
    })


def test_local_block_adam_gets_no_edges_and_centralized_adam_one_client_with_all_data(tokenizer):
    local = prepare_inputs(_bbc_config("local_block_adam"))
    central = prepare_inputs(_bbc_config("centralized_adam"))
    assert local.topology.edges() == [] and torch.equal(local.topology.mixing_matrix(), torch.eye(3, dtype=torch.float64))
    assert len(central.data.client_shards) == 1 and central.topology.num_clients == 1
    assert sorted(central.data.client_shards[0], key=repr) == sorted(
        (e for shard in local.data.client_shards for e in shard), key=repr
    )


def test_a_new_method_is_one_registered_class(monkeypatch):
    # Prepare: a method that ignores its neighbours (a new exchange rule), registered by name only
    method_names()  # the built-in methods are discovered into the real registry first
    monkeypatch.setattr("deca_ray.methods._REGISTRY", dict(_REGISTRY))

    @register
    class KeepOwn(Method):
        name = "keep_own"
        summary = "test: trains everything, ignores what it receives"

        def combine(self, own, self_weight, neighbours, layout):
            return own.clone()

    # Execute: the ordinary config and client machinery pick it up by name
    config, clients = _clients("keep_own")
    run_reference(clients, build_topology("ring", 3), config.algorithm, seed=0)
    # Assert: clients trained on different data and, ignoring each other, did not agree
    states = [client.trainable_state() for client in clients]
    assert any(not torch.equal(states[0][name], states[1][name]) for name in states[0])
    assert "keep_own" in method_names()


def test_a_new_method_with_its_own_options_is_one_test_module_class(monkeypatch):
    # Prepare: a method with an option of its own (how far to move toward the neighbourhood mix),
    # registered from here: no edit to the config, the client or the driver
    from typing import Literal

    from pydantic import Field

    from deca_ray.algorithm.mixing import mix
    from deca_ray.config import AlgorithmConfig

    method_names()  # the built-in methods are discovered into the real registry first
    monkeypatch.setattr("deca_ray.methods._REGISTRY", dict(_REGISTRY))

    class PartialMixOptions(AlgorithmConfig):
        type: Literal["partial_mix"] = "partial_mix"
        pull: float = Field(1.0, ge=0, le=1)

    @register
    class PartialMix(Method):
        name = "partial_mix"
        summary = "test: x_new = x½ + pull·(mix − x½)"
        options = PartialMixOptions

        def combine(self, own, self_weight, neighbours, layout):
            return own + self.config.pull * (mix(own, self_weight, neighbours) - own)

    # Execute: the option validates, reaches the method, and a run goes through the reference loop
    config, clients = _clients("partial_mix", pull=0.0)
    run_reference(clients, build_topology("ring", 3), config.algorithm, seed=0)
    # Assert: pull 0 keeps each client's own step (no agreement), and the option is the method's own
    assert config.algorithm.pull == 0.0 and clients[0].method.config.pull == 0.0
    states = [client.trainable_state() for client in clients]
    assert any(not torch.equal(states[0][name], states[1][name]) for name in states[0])
    with pytest.raises(ConfigError, match=r"algorithm.pull: unknown key for method 'deca': it is an option of partial_mix"):
        tiny_config(algorithm={"pull": 0.5})
    with pytest.raises(ConfigError, match=r"algorithm.pull: Input should be less than or equal to 1"):
        tiny_config(algorithm={"type": "partial_mix", "pull": 2})


def test_only_the_methods_own_options_are_in_its_config():
    deca = tiny_config().algorithm.model_dump()
    lora = tiny_config(algorithm={"type": "dec_lora"}).algorithm.model_dump()
    assert "lora" not in deca and "adapter" not in deca and "h_scale" in deca
    assert "lora" in lora and "h_scale" not in lora and "variant" not in lora


def test_cli_lists_every_method_with_its_summary(capsys):
    from deca_ray.cli import main

    assert main(["methods"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == method_names()


@pytest.mark.parametrize("method", ["dadam", "dec_lora", "deca"])
def test_rolling_back_to_the_start_forgets_the_optimizer_state(method):
    # Prepare: the checkpoint taken before any step (what an early failure rolls back to)
    _, [client] = _clients(method, count=1)
    tensors, meta = client.checkpoint_state()
    x0 = client.trainable_state()
    for _ in range(2):
        client.begin_block(0)
        client.half_step(), client.mix([], 1.0)
    # Execute
    client.restore_state(tensors, meta)
    client.begin_block(0)
    # Assert: the parameters and the moments are those of a fresh start
    assert client.block.moments.step == 0 and torch.count_nonzero(client.block.moments.m) == 0
    for name, value in client.trainable_state().items():
        assert torch.equal(value, x0[name]), name


def test_decaf_network_average_is_the_mean_product_re_factorised():
    # Prepare: three clients' LoRA states, one of them with every SVD sign flipped (same product)
    _, clients = _clients("decaf")
    _one_exchange(clients, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # no mixing: states differ
    states = [client.trained_state() for client in clients]
    flipped = {name: -value for name, value in states[2].items()}
    # Execute
    average = clients[0].method.average([states[0], states[1], flipped])
    # Assert: the average product is that of the unflipped states, and it is the best rank-r fit
    for a in (name for name in average if ".lora_A." in name):
        b = a.replace(".lora_A.", ".lora_B.")
        mean_product = sum(state[b] @ state[a] for state in states) / 3
        best_b, best_a = refactorise(mean_product, rank=2)
        torch.testing.assert_close(average[b] @ average[a], best_b @ best_a, rtol=1e-4, atol=1e-7)


def test_local_block_adam_survives_dropping_a_client():
    from deca_ray.algorithm.topology import isolated_topology, remove_clients

    survivors = remove_clients(isolated_topology(4), [2])
    assert survivors.clients == (0, 1, 3) and survivors.edges() == []
    assert torch.equal(survivors.mixing_matrix(), torch.eye(3, dtype=torch.float64))
