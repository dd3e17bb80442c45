"""Plain containers passed between data preparation, clients and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EncodedExample:
    """One tokenised example: the prompt followed by the answer the loss is computed on.

    ``input_ids[:num_prompt_tokens]`` is the prompt (chat template included) and the rest is
    the answer (label word or response, then the end-of-turn token). ``label`` is the index
    into ``PreparedData.label_words`` for classification, -1 for instruction data.
    """

    input_ids: tuple[int, ...]
    num_prompt_tokens: int
    label: int = -1


@dataclass(frozen=True)
class PreparedData:
    """Everything the clients and the evaluator need, built once on the driver."""

    task: str
    """``classification`` or ``instruction``."""
    client_shards: list[list[EncodedExample]]
    """Training examples of client i at index i (non-empty)."""
    test: list[EncodedExample]
    """Held-out split, fixed before partitioning."""
    label_words: list[str] = field(default_factory=list)
    """Classification: the answer word of each label index."""
    label_answer_ids: list[tuple[int, ...]] = field(default_factory=list)
    """Classification: the token ids of each label's answer (without the end-of-turn token)."""
    partition_report: dict = field(default_factory=dict)
    """Counts per client × label (or category), for humans and MLflow."""
