"""Assemble an experiment from its config: tokenizer, data, graph, clients, evaluation."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from deca_ray.algorithm.mixing import average_states
from deca_ray.algorithm.topology import Topology, build_topology
from deca_ray.client import ClientSpec, ClientWorker
from deca_ray.config import ExperimentConfig
from deca_ray.data.prepare import prepare_data
from deca_ray.data.types import PreparedData
from deca_ray.evaluate import evaluate
from deca_ray.models import load_model, load_tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """What every backend needs before training starts."""

    tokenizer: PreTrainedTokenizerBase
    data: PreparedData
    topology: Topology

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)


def prepare_inputs(config: ExperimentConfig) -> Inputs:
    tokenizer = load_tokenizer(config.model)
    data = prepare_data(config, tokenizer)
    return Inputs(tokenizer=tokenizer, data=data, topology=topology_from_config(config))


def topology_from_config(config: ExperimentConfig) -> Topology:
    topology = config.topology
    return build_topology(
        topology.type,
        config.num_clients,
        weights=topology.weights,
        edge_probability=topology.edge_probability,
        torus_shape=topology.torus_shape,
        edges=topology.edges,
        seed=config.seed if topology.seed is None else topology.seed,
        max_resamples=topology.max_resamples,
    )


def client_specs(config: ExperimentConfig, inputs: Inputs) -> list[ClientSpec]:
    return [
        ClientSpec.from_config(config, index, inputs.pad_token_id, inputs.vocab_size)
        for index in range(config.num_clients)
    ]


def build_clients(config: ExperimentConfig, inputs: Inputs) -> list[ClientWorker]:
    """In-process clients (reference loop)."""
    return [
        ClientWorker(spec, shard)
        for spec, shard in zip(client_specs(config, inputs), inputs.data.client_shards, strict=True)
    ]


def evaluate_states(
    config: ExperimentConfig, inputs: Inputs, states: Sequence[dict[str, torch.Tensor]]
) -> dict[str, float]:
    """Held-out metrics of the network-average model and (optionally) of each client's model.

    Keys: ``avg/<metric>`` for x̄, ``clients_mean/<metric>`` and ``clients_std/<metric>``.
    """
    model = load_model(config.model, inputs.vocab_size, seed=config.seed)
    results = _evaluate_state(model, average_states(states), config, inputs, prefix="avg/")
    if config.evaluation.per_client and len(states) > 1:
        per_client = [_evaluate_state(model, state, config, inputs, prefix="") for state in states]
        for metric in per_client[0]:
            values = [client[metric] for client in per_client]
            results[f"clients_mean/{metric}"] = statistics.fmean(values)
            results[f"clients_std/{metric}"] = statistics.pstdev(values)
    return results


def _evaluate_state(model, state, config: ExperimentConfig, inputs: Inputs, prefix: str) -> dict[str, float]:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in state:
                parameter.copy_(state[name])
    metrics = evaluate(model, inputs.data, config.evaluation, inputs.pad_token_id)
    return {prefix + key: value for key, value in metrics.items()}
