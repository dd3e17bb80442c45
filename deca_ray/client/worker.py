"""ClientWorker: one client's model replica x_i, data shard D_i and the optimizer state of what it trains.

A plain class: the reference loop holds several in one process, and the Ray runtime wraps it
with ``ray.remote`` where the group spawns it. Its verbs follow one inner step:
``begin_block`` → ``half_step`` (returns x½ to send) → ``mix`` (neighbours' x½ and weights).
What is trained, the local step and the mix rule come from the configured method
(``deca_ray.methods``); the active block's buffers and moments are an ``ActiveBlock``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import torch
from transformers import PreTrainedModel

from deca_ray.algorithm.active_block import ActiveBlock
from deca_ray.client.accounting import device_clock, tensor_memory
from deca_ray.client.forward import training_forward
from deca_ray.client.model import ClientSpec, ClientWeights, block_partition, client_device, initial_model
from deca_ray.client.state import ClientState, SavedMoments, check_fits
from deca_ray.config import EvaluationConfig
from deca_ray.data.batching import BatchSampler, collate
from deca_ray.data.types import EncodedExample, PreparedData
from deca_ray.evaluate import evaluate
from deca_ray.methods import build_method
from deca_ray.schedule import covered_blocks


class ClientWorker:
    """Owns x_i (the model), D_i (the shard) and the moments (m, v) of the tensors it trains."""

    def __init__(
        self, spec: ClientSpec, shard: Sequence[EncodedExample], shared_base: PreTrainedModel | None = None
    ) -> None:
        """``shared_base``: a model (from ``shared_base_model``) whose weights this client reads
        instead of its own copy until it trains them (virtual clients in one process)."""
        self.spec = spec
        self.shard = list(shard)
        self.method = build_method(spec.algorithm)
        self.hp = self.method.hyper_params()
        self.sampler = BatchSampler(len(self.shard), spec.batch_size, spec.seed, spec.client_index)
        self.device = client_device()
        self.model = initial_model(spec, self.method, shared_base)
        self.weights = ClientWeights(self.model, shared=shared_base is not None)
        self.partition = block_partition(self.model, spec.algorithm)
        self.covered = covered_blocks(self.partition.num_blocks, spec.algorithm)
        self.forward = training_forward(self.model, self.shard, self._names_of(self.covered), spec)
        self.block: ActiveBlock | None = None
        self.active_block: int | None = None
        self.trained_blocks: list[int] = []  # blocks activated so far, in first-activation order
        self._saved = SavedMoments(self.method.persistent_moments)

    # ------------------------------------------------------------------ inner-step verbs

    def begin_block(self, block_index: int) -> None:
        """Activate block k: only what the method trains under k needs gradients; moments start at zero
        (or continue, for persistent moments). A method that trains one fixed set keeps it across blocks."""
        names = self.method.trained_names(self.partition, block_index, self.covered)
        if block_index not in self.trained_blocks:
            self.trained_blocks.append(block_index)
        same_set = self.block is not None and self.block.names == names
        self.active_block = block_index
        if same_set and not self.method.block_wise:
            return
        self._release()
        self.active_block = block_index
        self.block = ActiveBlock(
            names, self.weights.take(names),
            lambda master: self._saved.for_block(block_index, lambda: self.method.new_moments(master)),
        )

    def half_step(self) -> tuple[torch.Tensor, dict[str, float]]:
        """Local gradient on block k and the half-step (Eq. 6); returns x½ and metrics."""
        block = self._require_block()
        started = time.perf_counter()
        indices = self.sampler.next_indices()
        batch = collate([self.shard[i] for i in indices], self.spec.pad_token_id)
        batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
        block.zero_grad()
        loss = self.forward.loss(batch, indices)
        loss.backward()
        x_half = block.half_step(block.gradient(), self.method.local_step, self.hp)
        return x_half, {
            "loss": float(loss.detach()),
            "finite": float(bool(torch.isfinite(x_half).all())),
            "tokens": float(batch["attention_mask"].sum()),
            "compute_s": time.perf_counter() - started,
            "tensor_bytes": float(self.tensor_memory()["total"]),  # weights + grads + optimizer state, grads live
        }

    def mix(self, neighbours: Sequence[tuple[torch.Tensor, float]], self_weight: float) -> dict[str, float]:
        """Gossip mix (Eq. 7), then h and BMA; x_k ← x_new. Returns the exchange profile (seconds spent
        combining, and on h + BMA + the write-back) and ‖x½ − x_new‖², the distance to the neighbourhood mix."""
        block = self._require_block()
        if block.pending is None:
            raise RuntimeError("mix() called before half_step() in this inner step")
        started = device_clock(self.device)
        received = [(tensor.to(self.device), weight) for tensor, weight in neighbours]
        x_new = self.method.combine(block.pending.x_half, self_weight, received, block.layout)
        combined = device_clock(self.device)
        distance_sq = block.finish_mix(x_new, self.hp, bma=self.method.uses_bma)
        return {"combine_s": combined - started, "moments_s": device_clock(self.device) - combined,
                "neighbourhood_distance_sq": distance_sq}

    # ------------------------------------------------------------------ state

    def active_block_tensor(self) -> torch.Tensor:
        """x_k of the active block (fp32; a view: do not mutate)."""
        return self._require_block().master

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every parameter some block trains (detached CPU copies), by name."""
        return self.weights.snapshot(self._names_of(range(self.partition.num_blocks)))

    def trained_state(self) -> dict[str, torch.Tensor]:
        """Parameters of the blocks trained so far (detached CPU copies): all that differs from x0."""
        return self.weights.snapshot(self._names_of(self.trained_blocks))

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, metadata) that restore this client exactly at an inner-step boundary."""
        if self.block is not None and self.block.pending is not None:
            raise RuntimeError("cannot checkpoint between half_step() and mix()")
        moments = dict(self._saved.by_block) if self.method.block_wise else {}  # else one set, the active one
        if self.block is not None and self.active_block is not None:
            moments[self.active_block] = self.block.moments
        master = self.block.separate_master() if self.block is not None else None
        return ClientState(self.trained_state(), moments, master, self.active_block, list(self.trained_blocks),
                           self.sampler.state(), torch.get_rng_state()).to_checkpoint()

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Inverse of ``checkpoint_state`` (on a fresh or a running client)."""
        state = ClientState.parse(tensors, meta, self.device, self.spec.client_index)
        check_fits(state, self.spec.client_index, self.weights.parameters, self.partition.num_blocks,
                   lambda block: self._names_of([block]))
        trained_since = [block for block in self.trained_blocks if block not in state.trained_blocks]
        if trained_since:  # rolling back past these blocks' first activation: they return to x0
            base = dict(initial_model(self.spec, self.method).named_parameters())
            self.weights.load({name: base[name].detach() for name in self._names_of(trained_since)})
        self.weights.load(state.trained)
        self._release()  # the running buffer and moments belong to the state being left
        self._saved.replace(state.moments, state.active_block)
        if state.active_block is not None:
            self.begin_block(state.active_block)  # takes the restored moments
            if state.master is not None:
                self._require_block().master.copy_(state.master)
        self.trained_blocks = state.trained_blocks
        self.sampler.load_state(state.sampler)
        torch.set_rng_state(state.rng)

    def evaluate(self, data: PreparedData, config: EvaluationConfig, state: dict[str, torch.Tensor] | None = None
                 ) -> dict[str, float]:
        """Held-out metrics of this client's model, or of ``state`` (e.g. x̄) loaded for the duration."""
        with self.weights.swapped_in(state):
            return evaluate(self.model, data, config, self.spec.pad_token_id)

    def block_bytes(self, block_index: int) -> int:
        """Bytes sent per neighbour while block k is active (the fp32 x½ of what is trained)."""
        names = self.method.trained_names(self.partition, block_index, self.covered)
        return sum(self.weights.parameters[name].numel() for name in names) * 4

    def tensor_memory(self) -> dict[str, int]:
        """Bytes of the tensors training holds now: weights, active-block grads, fp32 master, moments."""
        return tensor_memory(self.weights.total_bytes, self.weights.element_size, self.block)

    def _names_of(self, blocks: Iterable[int]) -> list[str]:
        return list(dict.fromkeys(
            name for block in blocks for name in self.method.trained_names(self.partition, block, self.covered)
        ))

    def _release(self) -> None:
        if self.block is not None:
            self.block.release()
        self.block, self.active_block = None, None

    def _require_block(self) -> ActiveBlock:
        if self.block is None:
            raise RuntimeError("no active block: call begin_block(k) first")
        return self.block
