"""Small builders shared by tests: tiny configs, synthetic examples, tiny clients."""

from __future__ import annotations

import random

from deca_ray.client import ClientSpec, ClientWorker
from deca_ray.config import ExperimentConfig, config_from_dict, merge_overrides
from deca_ray.data.types import EncodedExample

TINY_VOCAB = 96
PAD = 0


def tiny_config(**overrides) -> ExperimentConfig:
    """A tiny-llama experiment; ``overrides`` is a nested dict merged over the defaults."""
    raw = {
        "model": {"name": "tiny-llama", "tiny": {"num_layers": 4, "hidden_size": 32, "num_heads": 4,
                                                 "num_kv_heads": 2, "intermediate_size": 64}},
        "algorithm": {"lr": 1e-2, "inner_steps": 3, "blocks": {"layers_per_block": 2}},
        "data": {"batch_size": 2},
    }
    merge_overrides(raw, overrides)
    return config_from_dict(raw)


def synthetic_examples(count: int, seed: int, length: int = 12) -> list[EncodedExample]:
    """Random token sequences whose last 2 tokens are the answer."""
    rng = random.Random(seed)
    return [
        EncodedExample(tuple(rng.randrange(1, TINY_VOCAB) for _ in range(length)), length - 2, label=0)
        for _ in range(count)
    ]


def tiny_client(config: ExperimentConfig, index: int = 0, examples: list[EncodedExample] | None = None) -> ClientWorker:
    spec = ClientSpec.from_config(config, index, pad_token_id=PAD, vocab_size=TINY_VOCAB)
    return ClientWorker(spec, examples or synthetic_examples(16, seed=index))

