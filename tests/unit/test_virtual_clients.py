"""Virtual clients: several ClientWorkers in one process reading one copy of the frozen weights."""

from __future__ import annotations

import torch

from deca_ray.algorithm.topology import build_topology
from deca_ray.client import ClientSpec, ClientWorker, shared_base_model
from deca_ray.reference import run_reference
from tests.helpers import PAD, TINY_VOCAB, synthetic_examples, tiny_client, tiny_config


def _shared_clients(config, count: int):
    specs = [ClientSpec.from_config(config, i, PAD, TINY_VOCAB) for i in range(count)]
    base = shared_base_model(specs[0])
    return base, [ClientWorker(spec, synthetic_examples(16, seed=i), shared_base=base) for i, spec in enumerate(specs)]


def _pointers(model: torch.nn.Module) -> dict[str, int]:
    return {name: parameter.data_ptr() for name, parameter in model.named_parameters()}


def test_virtual_clients_read_one_copy_of_the_weights_until_they_train_a_block():
    config = tiny_config()
    base, clients = _shared_clients(config, 2)
    base_before = {name: value.clone() for name, value in base.state_dict().items()}
    assert _pointers(clients[0].model) == _pointers(clients[1].model) == _pointers(base)
    # Execute: client 0 trains block 0 for one step, alone (no neighbours)
    clients[0].begin_block(0)
    clients[0].half_step(), clients[0].mix([], 1.0)
    # Assert: block 0 is now client 0's own; the base and client 1 did not change
    own = set(clients[0].partition.blocks[0].parameter_names)
    pointers = _pointers(clients[0].model)
    assert all(pointers[name] != _pointers(base)[name] for name in own)
    assert all(pointers[name] == _pointers(base)[name] for name in pointers if name not in own)
    for name, value in base.state_dict().items():
        assert torch.equal(value, base_before[name]), name
    assert _pointers(clients[1].model) == _pointers(base)


def test_loading_a_state_into_shared_weights_leaves_the_others_alone():
    base, clients = _shared_clients(tiny_config(), 2)
    name = clients[0].partition.blocks[1].parameter_names[0]
    before = base.get_parameter(name).clone()
    clients[0].weights.load({name: torch.zeros_like(before)})
    assert torch.count_nonzero(clients[0].model.get_parameter(name)) == 0
    assert torch.equal(base.get_parameter(name), before)
    assert torch.equal(clients[1].model.get_parameter(name), before)


def test_virtual_clients_train_exactly_like_separate_ones():
    config = tiny_config()
    topology = build_topology("ring", 3)
    _, shared = _shared_clients(config, 3)
    separate = [tiny_client(config, i, synthetic_examples(16, seed=i)) for i in range(3)]
    run_reference(shared, topology, config.algorithm, seed=0)
    run_reference(separate, topology, config.algorithm, seed=0)
    for a, b in zip(shared, separate, strict=True):
        for name, value in a.trainable_state().items():
            assert torch.equal(value, b.trainable_state()[name]), name
