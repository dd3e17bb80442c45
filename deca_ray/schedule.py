"""The training schedule (round → block → inner step) and the metrics each inner step yields."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
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

    @property
    def round_number(self) -> int:
        """Round t counted from 1 ("round 1/3"): what the CLI, MLflow and Grafana show."""
        return self.round_index + 1

    @property
    def step_number(self) -> int:
        """Inner step r counted from 1 within its block activation, shown like ``round_number``.
        Blocks keep their 0-based index everywhere: it is the number ``blocks.fixed_order`` names."""
        return self.inner_step + 1


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
    if blocks.order != "fixed":
        return list(range(num_blocks))
    covered = sorted(set(blocks.fixed_order or []))
    outside = [block for block in covered if not 0 <= block < num_blocks]
    if outside:
        raise ValueError(f"algorithm.blocks.fixed_order names block(s) {outside}, but the model has {num_blocks} "
                         f"blocks (0..{num_blocks - 1})")
    return covered


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
    """Exact: mean over clients of ‖x_i − x̄‖² on the active block after mixing. A central gather of
    every block, so measured only at block boundaries (or every ``tracking.consensus_every_steps``);
    None on other steps."""
    local_consensus_distance: float | None = None
    """Every step, without a gather: mean over clients of ‖x½_i − x_new_i‖², each client's squared
    distance to its neighbourhood mix Σ_j w_ij·x½_j (what its own mix already computes)."""
    client_neighbourhood_distance_sq: list[float] = field(default_factory=list)
    """Each client's ‖x½_i − x_new_i‖² (the terms of ``local_consensus_distance``)."""
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
        return [tokens / max(seconds, 1e-9) for tokens, seconds in zip(self.client_tokens, self.client_compute_s, strict=True)]

    def as_dict(self) -> dict:
        record = asdict(self)
        record.update(asdict(self.position))
        del record["position"]
        record["mean_loss"] = self.mean_loss
        record["barrier_wait_s"] = self.barrier_wait_s
        return record


MIX_TIMING_KEYS = ("combine_s", "moments_s")
"""The keys of ``ClientWorker.mix``'s dict that are seconds (the others are measurements)."""
NEIGHBOURHOOD_DISTANCE_KEY = "neighbourhood_distance_sq"
"""The key of ``ClientWorker.mix``'s dict holding ‖x½_i − x_new_i‖²."""


def bytes_sent(senders_of: Mapping[int, Iterable[int]], block_bytes: int, clients: Sequence[int]) -> list[int]:
    """Bytes each of ``clients`` sent this step: its block once per client that mixed it in.

    ``senders_of[i]``: the clients whose blocks client i mixed in (its in-neighbours this step), so
    a client's count is its out-degree; one function for the runtime driver and the reference loop.
    """
    sent = dict.fromkeys(clients, 0)
    for senders in senders_of.values():
        for sender in senders:
            sent[sender] = sent.get(sender, 0) + block_bytes
    return [sent[client] for client in clients]


def mix_compute_s(mixed: Mapping[str, float]) -> float:
    """A client's own arithmetic in the exchange phase: the timing keys of its mix dict only."""
    return sum(mixed.get(key, 0.0) for key in MIX_TIMING_KEYS)


def local_consensus(mixed: Sequence[Mapping[str, float]]) -> tuple[float | None, list[float]]:
    """(mean, per-client) ‖x½_i − x_new_i‖² from the clients' mix dicts; (None, []) if any lacks it."""
    reported = [report.get(NEIGHBOURHOOD_DISTANCE_KEY) for report in mixed]
    values = [float(value) for value in reported if value is not None]
    if not values or len(values) != len(reported):
        return None, []
    return sum(values) / len(values), values
