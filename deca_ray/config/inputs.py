"""What a run starts from: the model, the data and its split across clients, the graph between them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from deca_ray.algorithm.choices import TopologyKind, WeightScheme
from deca_ray.config.base import ConfigPart


class TinyModelConfig(ConfigPart):
    """Shape of the randomly initialised LLaMA used by tests and smoke runs (``name: tiny-llama``)."""

    num_layers: int = Field(4, ge=1)
    hidden_size: int = Field(64, ge=8)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(128, ge=8)

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelConfig:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                "hidden_size must be divisible by num_heads and num_heads by num_kv_heads"
            )
        return self


class ModelConfig(ConfigPart):
    """Which causal LM every client starts from."""

    name: str = "smollm2-135m"
    """``smollm2-135m`` (packaged, offline), ``tiny-llama`` (random, for tests), a hub id or a local path."""
    tokenizer: str | None = None
    """Tokenizer hub id or path; default: the model's own (packaged SmolLM2 tokenizer for presets)."""
    tiny: TinyModelConfig = TinyModelConfig()
    dtype: Literal["float32", "bfloat16"] = "float32"
    cache_dir: Path | None = None
    """Where converted models live; default ``$DECA_RAY_CACHE`` or ``~/.cache/deca_ray``."""


class DataConfig(ConfigPart):
    """Where examples come from and how they become token sequences."""

    source: str = "bbc_news"
    """``bbc_news`` / ``fortunes`` (packaged), a local .json/.jsonl/.csv/.parquet file, or a hub dataset name."""
    task: Literal["classification", "instruction"] = "classification"
    text_field: str = "text"
    label_field: str = "label"
    title_field: str | None = "title"
    prompt_field: str = "prompt"
    response_field: str = "response"
    messages_field: str = "messages"
    category_field: str | None = None
    """Instruction data: optional field to partition by (``partition.type: by_field``)."""
    split: str = "train"
    """Split to read from local files or hub datasets."""
    label_words: dict[str, str] | None = None
    """Verbalizer: label → answer word; default: the label itself."""
    instruction: str | None = None
    """Classification prompt; ``{labels}`` is replaced by the comma-separated label words."""
    test_size: int | float = 150
    """Held-out examples (int) or fraction (float in (0, 1)), split off stratified before partitioning."""
    max_train_examples: int | None = Field(None, ge=1)
    """Stratified, seeded subsample of the training pool (short runs)."""
    body_words: int | None = Field(60, ge=1)
    """Keep the first N words of each text before tokenising (long articles)."""
    max_tokens: int = Field(128, ge=16)
    """Token budget per example; the text is truncated, never the answer."""
    batch_size: int = Field(4, ge=1)

    @field_validator("test_size")
    @classmethod
    def _test_size_in_range(cls, test_size: int | float) -> int | float:
        # a field validator, so the error is reported at data.test_size, not at data
        if isinstance(test_size, float) and not 0.0 < test_size < 1.0:
            raise ValueError("a fraction must lie in (0, 1); use an int for a count")
        if isinstance(test_size, int) and test_size < 1:
            raise ValueError("hold out at least 1 example")
        return test_size


class PartitionConfig(ConfigPart):
    """How the training pool is split across clients (non-IID by default)."""

    type: Literal["dirichlet", "iid", "shards", "by_field"] = "dirichlet"
    alpha: float = Field(0.25, gt=0)
    """Dirichlet concentration: smaller is more skewed."""
    min_per_client: int = Field(2, ge=1)
    """Dirichlet: resample until every client holds at least this many examples."""
    shards_per_client: int = Field(2, ge=1)
    field: str | None = None
    """by_field: the field whose values define clients (default: the label / category field)."""
    max_resamples: int = Field(1000, ge=1)


class TopologyConfig(ConfigPart):
    """Communication graph over clients and its mixing weights."""

    type: TopologyKind = "ring"
    weights: WeightScheme = "metropolis_hastings"
    edge_probability: float = Field(0.5, gt=0, le=1)
    """erdos_renyi: probability of each edge."""
    torus_shape: tuple[int, int] | None = None
    """torus: rows × columns (default: the most square factorisation of num_clients)."""
    edges: list[tuple[int, int]] | None = None
    """custom: undirected edges between client indices 0..num_clients-1."""
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    """erdos_renyi: graph seed (default: the experiment seed)."""
    max_resamples: int = Field(1000, ge=1)
