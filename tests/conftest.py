"""Shared fixtures: offline hub, the packaged tokenizer, tiny models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest

from deca_ray.config import ModelConfig


@pytest.fixture(scope="session")
def tokenizer():
    """The packaged SmolLM2 tokenizer (converted once into the user cache, ~20 s the first time)."""
    from deca_ray.models import load_tokenizer

    return load_tokenizer(ModelConfig())
