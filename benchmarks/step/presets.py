"""Sizes of the step profile: ``full`` (SmolLM2 on the quickstart's data), ``quick`` (tiny LLaMA on synthetic
sequences, seconds), ``random_weights`` (SmolLM2's shape, for a GPU machine)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SMOLLM2_SHAPE = {"num_layers": 30, "hidden_size": 576, "num_heads": 9, "num_kv_heads": 3, "intermediate_size": 1536}
SMOLLM2_VOCAB = 49152


@dataclass(frozen=True)
class StepPreset:
    """Everything the step profile varies; one object so a result file records all of it."""

    name: str
    model: dict[str, Any]
    """``model`` section of the experiment config (its ``dtype`` comes from ``dtype``)."""
    data: Literal["quickstart", "synthetic"] = "quickstart"
    """``quickstart``: client 0's shard of deployments/local/quickstart.yaml; ``synthetic``: random
    token sequences of the quickstart's lengths (a machine without the packaged tokenizer)."""
    top_block: int = 14
    """The top block's index at ``layers_per_block`` (SmolLM2: 15 blocks of 2 layers)."""
    layers_per_block: int = 2
    batch_size: int = 4
    warmup_rounds: int = 1
    """Untimed rounds of every variant first (allocator, kernel selection)."""
    repeats: int = 9
    """Timed rounds; every variant trains on the same batch in a round (medians are quoted)."""
    matmul_repeats: int = 30
    """Timed samples per shape, before and after the steps; the best counts (milliseconds each on a CPU)."""
    torch_threads: int | None = 2
    """torch intra-op threads for the steps and the matmul peak alike (None: leave torch's default)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """``auto``: bfloat16 weights on a GPU, float32 on a CPU."""
    synthetic: dict[str, int] = field(default_factory=lambda: {
        "vocab_size": SMOLLM2_VOCAB, "examples": 64, "min_length": 80, "max_length": 96, "answer_tokens": 3})

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup_rounds < 0:
            raise ValueError("need repeats >= 1 and warmup_rounds >= 0")
        if self.top_block < 1:
            raise ValueError("top_block must be above block 0 (the bottom block), or the two are the same")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = StepPreset(name="full", model={"name": "smollm2-135m"})

QUICK = StepPreset(
    name="quick",
    model={"name": "tiny-llama", "tiny": {"num_layers": 4, "hidden_size": 64, "num_heads": 4, "num_kv_heads": 2,
                                          "intermediate_size": 128}},
    data="synthetic",
    top_block=1,
    repeats=2,
    matmul_repeats=3,
    torch_threads=1,  # a smoke run: two threads on a loaded 2-core machine wait on each other at every tiny op
    synthetic={"vocab_size": 512, "examples": 16, "min_length": 10, "max_length": 16, "answer_tokens": 2},
)

RANDOM_WEIGHTS = StepPreset(
    name="random_weights",
    model={"name": "tiny-llama", "tiny": dict(SMOLLM2_SHAPE)},
    data="synthetic",
    torch_threads=None,
)
"""SmolLM2's shape with random weights on synthetic sequences: for a GPU machine, which has neither
the packaged model nor its tokenizer (bfloat16 there)."""
