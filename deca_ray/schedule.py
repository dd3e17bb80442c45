"""The training schedule (round → block → inner step) and the metrics each inner step yields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from deca_ray.algorithm.blocks import block_order
from deca_ray.config import AlgorithmConfig


@dataclass(frozen=True)
class Position:
    """Where training is: global round t, active block k, inner step r, and the global step count."""

    round_index: int
    block_index: int
    inner_step: int
    global_step: int


def schedule(num_blocks: int, algorithm: AlgorithmConfig, seed: int) -> Iterator[Position]:
    """Every inner step of the run, in order (the same on every client and on resume)."""
    blocks = algorithm.blocks
    global_step = 0
    for round_index in range(algorithm.rounds):
        for block_index in block_order(num_blocks, round_index, blocks.order, seed, blocks.fixed_order):
            for inner_step in range(algorithm.inner_steps):
                yield Position(round_index, block_index, inner_step, global_step)
                global_step += 1


def covered_blocks(num_blocks: int, algorithm: AlgorithmConfig) -> list[int]:
    """The blocks the schedule ever activates (``fixed_order``'s, or all), ascending."""
    blocks = algorithm.blocks
    return sorted(set(blocks.fixed_order or [])) if blocks.order == "fixed" else list(range(num_blocks))


def total_steps(num_blocks: int, algorithm: AlgorithmConfig) -> int:
    blocks_per_round = len(algorithm.blocks.fixed_order or []) if algorithm.blocks.order == "fixed" else num_blocks
    return algorithm.rounds * blocks_per_round * algorithm.inner_steps


@dataclass
class StepMetrics:
    """What one inner step reports (small: never tensors)."""

    position: Position
    clients: list[int]
    """Ids of the clients reported below (all live clients, or those not late)."""
    client_losses: list[float]
    bytes_sent: list[int]
    """Bytes each client sent this step: active block bytes × out-degree."""
    step_time_s: float
    exchange_time_s: float = 0.0
    consensus_distance: float | None = None
    """Mean over clients of ‖x_i − x̄‖² on the active block after mixing."""
    client_compute_s: list[float] = field(default_factory=list)
    """Each client's own half-step time (forward, backward, Adam)."""
    client_tokens: list[float] = field(default_factory=list)
    client_mix_compute_s: list[float] = field(default_factory=list)
    """Each client's own arithmetic in the exchange phase (combine, h, BMA, write-back)."""
    client_tensor_bytes: list[float] = field(default_factory=list)
    """Each client's weights + grads + fp32 master + moments during the half-step (its peak)."""
    late_clients: list[int] = field(default_factory=list)
    """Clients whose x½ missed the straggler deadline (their neighbours mixed without them)."""

    @property
    def mean_loss(self) -> float:
        return sum(self.client_losses) / len(self.client_losses)

    @property
    def barrier_wait_s(self) -> float:
        """Mean time a client idles at the lockstep barrier waiting for the slowest one."""
        if not self.client_compute_s:
            return 0.0
        slowest = max(self.client_compute_s)
        return sum(slowest - own for own in self.client_compute_s) / len(self.client_compute_s)

    @property
    def tokens_per_s(self) -> list[float]:
        return [tokens / max(seconds, 1e-9) for tokens, seconds in zip(self.client_tokens, self.client_compute_s)]

    def as_dict(self) -> dict:
        record = asdict(self)
        record.update(asdict(self.position))
        del record["position"]
        record["mean_loss"] = self.mean_loss
        record["barrier_wait_s"] = self.barrier_wait_s
        return record
