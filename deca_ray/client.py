"""ClientWorker: one client's model replica, data shard and the optimizer state of what it trains.

A plain class: the reference loop holds several in one process, and the Ray runtime wraps it
with ``ray.remote`` where the group spawns it. Its verbs follow one inner step:
``begin_block`` → ``half_step`` (returns x½ to send) → ``mix`` (neighbours' x½ and weights).
What is trained, the local step and the mix rule come from the configured method
(``deca_ray.methods``); DECA trains only the active block.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from deca_ray.algorithm.blocks import BlockPartition, layers_of, partition_model
from deca_ray.algorithm.deca import BlockMoments, HalfStep, apply_bma, discrepancy
from deca_ray.config import AlgorithmConfig, EvaluationConfig, ExperimentConfig, ModelConfig
from deca_ray.data.batching import BatchSampler, collate
from deca_ray.data.types import EncodedExample, PreparedData
from deca_ray.evaluate import evaluate
from deca_ray.methods import get_method
from deca_ray.methods.base import Method
from deca_ray.models import clone_sharing_weights, load_model, seeded_rng
from deca_ray.schedule import covered_blocks


@dataclass(frozen=True)
class ClientSpec:
    """The part of the experiment config one client needs (what an actor receives)."""

    client_index: int
    model: ModelConfig
    algorithm: AlgorithmConfig
    batch_size: int
    seed: int
    pad_token_id: int
    vocab_size: int

    @classmethod
    def from_config(cls, config: ExperimentConfig, client_index: int, pad_token_id: int, vocab_size: int) -> ClientSpec:
        return cls(
            client_index=client_index,
            model=config.model,
            algorithm=config.algorithm,
            batch_size=config.data.batch_size,
            seed=config.seed,
            pad_token_id=pad_token_id,
            vocab_size=vocab_size,
        )


def block_partition(model: torch.nn.Module, algorithm: AlgorithmConfig) -> BlockPartition:
    """The configured partition of ``model``'s parameters (identical on every client)."""
    blocks = algorithm.blocks
    return partition_model(
        model,
        layers_per_block=blocks.layers_per_block,
        include_embeddings=blocks.include_embeddings,
        include_final_norm=blocks.include_final_norm,
        include_lm_head=blocks.include_lm_head,
        groups=[(group.name, group.pattern) for group in blocks.groups],
    )


def client_device() -> torch.device:
    """An actor sees only its own GPU (Ray sets CUDA_VISIBLE_DEVICES), so "cuda" is that one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def shared_base_model(spec: ClientSpec) -> torch.nn.Module:
    """The pretrained weights once, on this process's device, for clients built with ``shared_base``."""
    return load_model(spec.model, spec.vocab_size, seed=spec.seed).to(client_device()).requires_grad_(False)


def prepare_for_method(model: torch.nn.Module, algorithm: AlgorithmConfig, method: Method) -> None:
    """Add ``method``'s own modules (LoRA, adapters) to the layers DECA's schedule covers, in place."""
    base = block_partition(model, algorithm)
    covered = covered_blocks(base.num_blocks, algorithm)
    method.prepare_model(model, algorithm, layers_of([name for k in covered for name in base.blocks[k].parameter_names]))


class ClientWorker:
    """Owns x_i (the model), D_i (the shard) and the moments (m, v) of the tensors it trains."""

    def __init__(
        self, spec: ClientSpec, shard: Sequence[EncodedExample], shared_base: torch.nn.Module | None = None
    ) -> None:
        """``shared_base``: a model (from ``shared_base_model``) whose weights this client reads
        instead of its own copy until it trains them (virtual clients in one process)."""
        self.spec = spec
        self.shard = list(shard)
        self.method: Method = get_method(spec.algorithm.type)
        self.hp = self.method.hyper_params(spec.algorithm)
        self.sampler = BatchSampler(len(self.shard), spec.batch_size, spec.seed, spec.client_index)
        self.device = client_device()
        self.model = self._build_model(shared_base)
        self.partition = block_partition(self.model, spec.algorithm)
        self.covered = covered_blocks(self.partition.num_blocks, spec.algorithm)
        self._parameters = dict(self.model.named_parameters())
        # Fixed after construction; summed once rather than in every half-step's metrics.
        self._weight_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self._weight_size = next(self.model.parameters()).element_size()
        # Names whose tensors still belong to shared_base: written only after being made private.
        self._shared: set[str] = set(self._parameters) if shared_base is not None else set()
        self._persistent = spec.algorithm.moment_lifetime == "persistent" or not self.method.block_wise
        self._saved_moments: dict[int, BlockMoments] = {}
        self.active_block: int | None = None
        self.trained_blocks: list[int] = []  # blocks activated so far, in first-activation order
        self._active_names: tuple[str, ...] | None = None
        self._layout: list[tuple[str, torch.Size]] = []  # names and shapes packed into the flat buffer
        self._flat: torch.Tensor | None = None  # the trained parameters, flat, in the model's dtype
        self._master: torch.Tensor | None = None  # x_k in fp32: the same tensor as _flat for fp32 models
        self._moments: BlockMoments | None = None
        self._pending: HalfStep | None = None  # this inner step's half-step, between half_step() and mix()

    def _build_model(self, shared_base: torch.nn.Module | None = None) -> torch.nn.Module:
        """x0: the pretrained model plus the method's own modules, identical on every client."""
        if shared_base is not None:
            model = clone_sharing_weights(shared_base)
        else:
            model = load_model(self.spec.model, self.spec.vocab_size, seed=self.spec.seed)
        with seeded_rng(self.spec.seed):  # the same LoRA / adapter initialisation on every client
            prepare_for_method(model, self.spec.algorithm, self.method)
        model.to(self.device).requires_grad_(False)
        return model

    # ------------------------------------------------------------------ inner-step verbs

    def begin_block(self, block_index: int) -> None:
        """Activate block k: only what the method trains under k needs gradients; moments start at zero.

        Methods that train one fixed set (not block-wise) keep their buffer and moments across blocks.
        """
        names = self.method.trained_names(self.partition, block_index, self.covered)
        if block_index not in self.trained_blocks:
            self.trained_blocks.append(block_index)
        if names == self._active_names and not self.method.block_wise:
            self.active_block = block_index
            return
        self._deactivate()
        self.active_block = block_index
        self._active_names = names
        params = self._active_parameters()
        self._layout = [(name, parameter.shape) for name, parameter in zip(names, params, strict=True)]
        self._flat = _flatten_into_views(params)  # a new buffer: the block is now this client's own
        self._shared.difference_update(names)
        # Mixed precision (BAdam-style): bf16 weights, an fp32 master copy of the active block only.
        self._master = self._flat if self._flat.dtype == torch.float32 else self._flat.float()
        for parameter in params:
            parameter.requires_grad_(True)
        if self._persistent:
            self._moments = self._saved_moments.setdefault(block_index, self.method.new_moments(self._master))
        else:
            self._moments = self.method.new_moments(self._master)

    def half_step(self) -> tuple[torch.Tensor, dict[str, float]]:
        """Local gradient on block k and the Adam half-step (Eq. 6); returns x½ and metrics."""
        flat, moments = self._require_active()
        started = time.perf_counter()
        batch = collate([self.shard[i] for i in self.sampler.next_indices()], self.spec.pad_token_id)
        batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
        params = self._active_parameters()
        for parameter in params:
            parameter.grad = None
        loss = self.model(**batch).loss
        loss.backward()
        grad = torch.cat([parameter.grad.reshape(-1) for parameter in params]).float()  # (block_numel,) fp32
        half = self.method.local_step(flat, grad, moments, self.hp)  # x½ is a new tensor: flat still holds x_k
        self._pending = half
        info = {
            "loss": float(loss.detach()),
            "finite": float(bool(torch.isfinite(half.x_half).all())),
            "tokens": float(batch["attention_mask"].sum()),
            "compute_s": time.perf_counter() - started,
            "tensor_bytes": float(self.tensor_memory()["total"]),  # weights + grads + optimizer state, grads live
        }
        return half.x_half, info

    def mix(self, neighbours: Sequence[tuple[torch.Tensor, float]], self_weight: float) -> dict[str, float]:
        """Gossip mix (Eq. 7), the consensus signal h and BMA; x_k ← x_new.

        Returns the seconds spent combining and on h + BMA + the write-back (the exchange profile).
        """
        flat, moments = self._require_active()
        if self._pending is None:
            raise RuntimeError("mix() called before half_step() in this inner step")
        half = self._pending
        started = self._clock()
        received = [(block.to(self.device), weight) for block, weight in neighbours]
        x_new = self.method.combine(half.x_half, self_weight, received, self._layout)
        combined = self._clock()
        # h overwrites x_k in place: x_k is not needed after h, and the next line replaces it with x_new.
        h = None if self.hp.variant == "without_bma" else discrepancy(flat, x_new, self.hp, out=flat)
        apply_bma(moments, half, h, self.hp)
        flat.copy_(x_new)
        if self._flat is not flat:
            self._flat.copy_(flat)  # round the fp32 master into the bf16 weights the model uses
        self._pending = None
        return {"combine_s": combined - started, "moments_s": self._clock() - combined}

    # ------------------------------------------------------------------ state

    def active_block_tensor(self) -> torch.Tensor:
        """x_k of the active block (a view: do not mutate)."""
        flat, _ = self._require_active()
        return flat

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every parameter some block trains (detached CPU copies), by name."""
        return self._state_of(range(self.partition.num_blocks))

    def trained_state(self) -> dict[str, torch.Tensor]:
        """Parameters of the blocks trained so far (detached CPU copies): all that differs from x0."""
        return self._state_of(self.trained_blocks)

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, metadata) that restore this client exactly at an inner-step boundary."""
        if self._pending is not None:
            raise RuntimeError("cannot checkpoint between half_step() and mix()")
        tensors = {f"param/{name}": value for name, value in self.trained_state().items()}
        moments = dict(self._saved_moments) if self.method.block_wise else {}  # else one set, the active one
        if self.active_block is not None and self._moments is not None:
            moments[self.active_block] = self._moments
        for block_index, state in moments.items():
            tensors[f"moments/{block_index}/m"] = state.m.cpu()
            tensors[f"moments/{block_index}/v"] = state.v.cpu()
        if self._master is not None and self._master is not self._flat:
            tensors["master"] = self._master.cpu()  # fp32 x_k: bf16 weights alone lose its low bits
        tensors["rng/torch"] = torch.get_rng_state()
        meta = {
            "active_block": self.active_block,
            "trained_blocks": list(self.trained_blocks),
            "moment_steps": {str(block): state.step for block, state in moments.items()},
            "sampler": self.sampler.state(),
        }
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Inverse of ``checkpoint_state`` (on a fresh or a running client)."""
        trained_since = [block for block in self.trained_blocks if block not in meta["trained_blocks"]]
        if trained_since:  # rolling back past these blocks' first activation: they return to x0
            self._reset_to_base(trained_since)
        self.load_trainable_state(
            {name.removeprefix("param/"): value for name, value in tensors.items() if name.startswith("param/")}
        )
        moments = {
            int(block): BlockMoments(
                tensors[f"moments/{block}/m"].to(self.device, copy=True),
                tensors[f"moments/{block}/v"].to(self.device, copy=True),
                step,
            )
            for block, step in meta["moment_steps"].items()
        }
        active = meta["active_block"]
        self._saved_moments = {block: state for block, state in moments.items() if self._persistent}
        self._pending = None
        self._deactivate()  # the running buffer and moments belong to the state being left
        if active is not None:
            self.begin_block(active)
            if "master" in tensors:
                self._master.copy_(tensors["master"])
            self._moments = moments[active]
            if self._persistent:
                self._saved_moments[active] = self._moments
        self.trained_blocks = list(meta["trained_blocks"])
        self.sampler.load_state(meta["sampler"])
        torch.set_rng_state(tensors["rng/torch"])

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, value in state.items():
                parameter = self._parameters[name]
                if name in self._shared:  # never write into weights other clients read
                    parameter.data = value.to(parameter.device, parameter.dtype, copy=True)
                    self._shared.discard(name)
                else:
                    parameter.copy_(value)

    def evaluate(
        self, data: PreparedData, config: EvaluationConfig, state: dict[str, torch.Tensor] | None = None
    ) -> dict[str, float]:
        """Held-out metrics of this client's model, or of ``state`` (e.g. x̄) loaded for the duration."""
        if state is None:
            return evaluate(self.model, data, config, self.spec.pad_token_id)
        own = {name: self._parameters[name].detach().cpu().clone() for name in state}
        self.load_trainable_state(state)
        try:
            return evaluate(self.model, data, config, self.spec.pad_token_id)
        finally:
            self.load_trainable_state(own)

    def block_bytes(self, block_index: int) -> int:
        """Bytes sent per neighbour while block k is active (the fp32 x½ of what is trained)."""
        names = self.method.trained_names(self.partition, block_index, self.covered)
        return sum(self._parameters[name].numel() for name in names) * 4

    def tensor_memory(self) -> dict[str, int]:
        """Bytes of the tensors training holds now: weights, active-block grads, fp32 master, moments."""
        weights, weight_size = self._weight_bytes, self._weight_size
        active = self._flat.numel() if self._flat is not None else 0
        master = active * 4 if weight_size != 4 else 0
        moments = (self._moments.m.numel() + self._moments.v.numel()) * 4 if self._moments is not None else 0
        return {"weights": weights, "grads": active * weight_size, "master": master, "moments": moments,
                "total": weights + active * weight_size + master + moments}

    # ------------------------------------------------------------------ helpers

    def _state_of(self, blocks: Sequence[int]) -> dict[str, torch.Tensor]:
        """Detached CPU copies of the parameters trained under ``blocks``, by name."""
        names = dict.fromkeys(
            name for block in blocks for name in self.method.trained_names(self.partition, block, self.covered)
        )
        return {name: self._parameters[name].detach().cpu().clone() for name in names}

    def _reset_to_base(self, blocks: Sequence[int]) -> None:
        base = dict(self._build_model().named_parameters())
        names = [name for block in blocks for name in self.method.trained_names(self.partition, block, self.covered)]
        self.load_trainable_state({name: base[name].detach() for name in names})

    def _clock(self) -> float:
        """perf_counter after the device's queued work: GPU kernels run asynchronously."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _deactivate(self) -> None:
        """Freeze what was trained and forget its buffer and moments (saved moments stay saved)."""
        if self._active_names:
            for parameter in self._active_parameters():
                parameter.requires_grad_(False)
                parameter.grad = None
        self.active_block = None
        self._active_names = None
        self._layout, self._flat, self._master, self._moments = [], None, None, None

    def _active_parameters(self) -> list[torch.nn.Parameter]:
        return [self._parameters[name] for name in self._active_names]

    def _require_active(self) -> tuple[torch.Tensor, BlockMoments]:
        """The active block's fp32 master x_k and its moments."""
        if self._master is None or self._flat is None or self._moments is None:
            raise RuntimeError("no active block: call begin_block(k) first")
        return self._master, self._moments


def _flatten_into_views(params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    """Copy params into one contiguous buffer and make each parameter a view of it.

    The optimizer then updates a single flat tensor in place and the model sees the change,
    with no per-parameter Python loop in the inner step.
    """
    flat = torch.cat([parameter.detach().reshape(-1) for parameter in params])
    offset = 0
    for parameter in params:
        numel = parameter.numel()
        parameter.data = flat[offset : offset + numel].view_as(parameter)
        offset += numel
    return flat
