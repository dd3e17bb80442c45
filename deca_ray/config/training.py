"""What a run trains and how it is evaluated: the block partition, the method's common options, evaluation.

``AlgorithmConfig`` holds what every method shares (schedule, optimizer, blocks). A method with
options of its own subclasses it in its module under ``deca_ray.methods`` with
``type: Literal["<name>"]``; ``ExperimentConfig.algorithm`` is validated as that subclass.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deca_ray.algorithm.choices import BlockOrder
from deca_ray.config.base import ConfigPart


class RegexGroup(ConfigPart):
    """A custom block: every parameter whose name matches ``pattern`` (re.search)."""

    name: str
    pattern: str


class BlocksConfig(ConfigPart):
    """How parameters are cut into blocks and in which order blocks are visited."""

    layers_per_block: int = Field(1, ge=1)
    """Consecutive transformer layers per block (1: measured best, BENCHMARKS.md section Q)."""
    include_embeddings: bool = False
    include_final_norm: bool = False
    include_lm_head: bool = False
    groups: list[RegexGroup] = []
    """Custom blocks, matched before the layer rule (first matching group wins)."""
    order: BlockOrder = "ascending"
    fixed_order: list[int] | None = None

    @model_validator(mode="after")
    def _fixed_order_given(self) -> BlocksConfig:
        if self.order == "fixed" and not self.fixed_order:
            raise ValueError("order 'fixed' needs fixed_order, e.g. [3, 1, 0, 2]")
        return self


class AlgorithmConfig(ConfigPart):
    """What every method shares: the schedule, the local optimizer and the block partition.

    A method with options of its own subclasses this in its module with ``type: Literal["<name>"]``
    (``deca_ray.methods.deca.DecaOptions``, ``.lora.LoraOptions``...); the experiment validates
    ``algorithm`` as the subclass its ``type`` names, so another method's keys are errors.
    """

    type: str = "deca"
    """Method by registered name: ``deca``, ``dec_lora``, ``decaf``, ``dec_adapter``, ``dsgd``, ``dadam``,
    ``local_block_adam``, ``centralized_adam`` (``deca-ray methods`` lists them)."""
    rounds: int = Field(1, ge=1)
    """T: sweeps over all blocks."""
    inner_steps: int = Field(5, ge=1)
    """R: local steps (each followed by one gossip exchange) per block activation."""
    lr: float = Field(5e-5, gt=0)
    """γ."""
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    """α1."""
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    """α2."""
    eps: float = Field(1e-8, gt=0)
    blocks: BlocksConfig = BlocksConfig()


class EvaluationConfig(ConfigPart):
    """Held-out evaluation of the network-average model and of the clients' own models."""

    before_training: bool = True
    after_training: bool = True
    max_examples: int | None = Field(None, ge=1)
    """Evaluate on at most this many held-out examples (first ones of the fixed split)."""
    scoring: Literal["mean", "sum"] = "mean"
    """Label log-likelihood: mean over the label's tokens (length-normalised) or sum."""
    per_client: bool = True
    batch_size: int = Field(16, ge=1)
    max_rows: int = Field(64, ge=1)
    """(prompt, candidate label) pairs scored at once: bounds evaluation memory whatever the number of labels."""
    sample_generations: int = Field(4, ge=0)
    """Instruction tasks: greedy answers to this many fixed held-out prompts, before and after training,
    logged to MLflow as the tables ``sample_generations_{before,after}.json`` (0: none)."""
    sample_max_new_tokens: int = Field(48, ge=1)
