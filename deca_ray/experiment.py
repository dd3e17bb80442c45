"""Assemble an experiment from its config: tokenizer, data, graph and client specs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from deca_ray.algorithm.blocks import layer_of
from deca_ray.algorithm.topology import Topology, build_topology, isolated_topology
from deca_ray.client import ClientSpec, ClientWorker, block_partition, prepare_for_method
from deca_ray.client.forward import PREFIX_FAMILIES, lowest_trained_layer
from deca_ray.config import ExperimentConfig
from deca_ray.data.batching import check_batch_fits
from deca_ray.data.prepare import prepare_data
from deca_ray.data.types import PreparedData
from deca_ray.errors import ConfigError
from deca_ray.methods import Method, build_method
from deca_ray.models import load_tokenizer, model_skeleton, seeded_rng
from deca_ray.schedule import covered_blocks

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
    """Tokenizer, data and graph; a centralised method gets one client holding every shard."""
    method = build_method(config.algorithm)
    tokenizer = load_tokenizer(config.model)
    check_method_fits_model(config, method, len(tokenizer))
    data = prepare_data(config, tokenizer)
    if method.centralised:
        data = replace(data, client_shards=[[example for shard in data.client_shards for example in shard]])
    check_batch_fits(data.client_shards, config.data.batch_size)
    if method.centralised:
        return Inputs(tokenizer=tokenizer, data=data, topology=isolated_topology(1))
    topology = topology_from_config(config) if method.gossips else isolated_topology(config.num_clients)
    return Inputs(tokenizer=tokenizer, data=data, topology=topology)


def check_method_fits_model(config: ExperimentConfig, method: Method, vocab_size: int) -> None:
    """Partition the model and add the method's modules on a weightless copy, so that a bad
    ``algorithm.blocks`` / ``algorithm.lora`` setting fails before anything is written or spawned."""
    skeleton = model_skeleton(config.model, vocab_size)
    try:
        # meta device: the added modules allocate nothing; forked RNG: validating draws no random numbers
        with torch.device("meta"), seeded_rng(config.seed):
            prepare_for_method(skeleton, config.algorithm, method)
        partition = block_partition(skeleton, config.algorithm)
        covered = covered_blocks(partition.num_blocks, config.algorithm)
        trained = [name for block in covered for name in method.trained_names(partition, block, covered)]
        if not trained:
            raise ValueError(f"method {method.name} finds nothing to train in blocks {covered}")
        if config.runtime.frozen_prefix == "on":
            check_frozen_prefix(skeleton, trained)
    except ValueError as error:
        raise ConfigError(
            f"algorithm (type {config.algorithm.type}) does not fit {config.model.name}: {error}"
        ) from None


def check_frozen_prefix(model: torch.nn.Module, trained_names: list[str]) -> None:
    """``runtime.frozen_prefix: on`` needs a supported family and a frozen layer below everything trained."""
    layer, below = lowest_trained_layer(model, trained_names)
    architecture: Any = model.config
    family = architecture.model_type
    if family not in PREFIX_FAMILIES:
        raise ValueError(f"runtime.frozen_prefix=on supports model types {', '.join(PREFIX_FAMILIES)}, not {family!r}; "
                         "set runtime.frozen_prefix to auto or off")
    if layer == 0:
        what = ", ".join((below or [name for name in trained_names if layer_of(name) == 0])[:2])
        raise ValueError(f"runtime.frozen_prefix=on needs a frozen layer below everything trained, but {what} "
                         "trains; train higher blocks only (algorithm.blocks.fixed_order) or set runtime.frozen_prefix "
                         "to auto or off")


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
        for index in range(len(inputs.data.client_shards))
    ]


def build_clients(config: ExperimentConfig, inputs: Inputs) -> list[ClientWorker]:
    """In-process clients (reference loop)."""
    return [
        ClientWorker(spec, shard)
        for spec, shard in zip(client_specs(config, inputs), inputs.data.client_shards, strict=True)
    ]
