"""Padding encoded examples into tensors, and each client's deterministic batch order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deca_ray.data.types import EncodedExample
from deca_ray.errors import ConfigError

IGNORE_INDEX = -100
"""Label value the loss skips (prompt tokens and padding)."""


def collate(examples: Sequence[EncodedExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; loss labels only on answer tokens.

    The masks come from the sequence lengths, never from ``input_ids == pad_token_id``:
    SmolLM2's pad token is also its end-of-turn token, which the answer contains.
    """
    width = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        ids = torch.tensor(example.input_ids, dtype=torch.long)
        input_ids[row, :length] = ids
        attention_mask[row, :length] = 1
        labels[row, example.num_prompt_tokens : length] = ids[example.num_prompt_tokens :]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def check_batch_fits(shards: Sequence[Sequence[EncodedExample]], batch_size: int) -> None:
    """``data.batch_size`` must not exceed the smallest client's shard (a batch never repeats an example)."""
    sizes = [len(shard) for shard in shards]
    smallest = min(range(len(sizes)), key=sizes.__getitem__)
    if batch_size > sizes[smallest]:
        raise ConfigError(
            f"data.batch_size={batch_size} exceeds the smallest client shard (client {smallest} holds "
            f"{sizes[smallest]} training examples); lower data.batch_size to at most {sizes[smallest]}, or give "
            "each client more data (raise data.max_train_examples, lower num_clients or raise partition.alpha)"
        )


class BatchSampler:
    """Seeded epochs of shuffled indices over one client's shard.

    The order depends only on (seed, client, epoch), so the whole sampler state is two
    integers: a resumed or restarted client continues the exact same sequence. A batch is at
    most one shard long (``check_batch_fits`` says so at start-up), so its memory is bounded.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, client_index: int) -> None:
        if num_examples < 1:
            raise ValueError(f"client {client_index} has no training examples")
        if not 1 <= batch_size <= num_examples:
            raise ValueError(f"client {client_index}: batch_size={batch_size} must lie in 1..{num_examples} "
                             "(its number of examples)")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.client_index = client_index
        self.epoch = 0
        self.cursor = 0
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, permutation), computed once per epoch

    def next_indices(self) -> list[int]:
        """The next ``batch_size`` indices, wrapping into a fresh shuffle at each epoch's end."""
        indices: list[int] = []
        while len(indices) < self.batch_size:
            order = self._epoch_order()
            take = min(self.batch_size - len(indices), self.num_examples - self.cursor)
            indices.extend(order[self.cursor : self.cursor + take].tolist())
            self.cursor += take
            if self.cursor == self.num_examples:
                self.epoch, self.cursor = self.epoch + 1, 0
        return indices

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])

    def _epoch_order(self) -> np.ndarray:
        if self._order is None or self._order[0] != self.epoch:
            rng = np.random.default_rng([self.seed, self.client_index, self.epoch])
            self._order = (self.epoch, rng.permutation(self.num_examples))
        return self._order[1]
