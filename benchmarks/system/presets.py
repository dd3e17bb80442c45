"""Sizes of the system benchmark: ``full`` (issue 5's configuration) and ``quick`` (development, CI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SWEEP_TINY = {"num_layers": 4, "hidden_size": 32, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}
"""Tiny LLaMA of the scale sweep (its blocks are ~74 KB: the driver's bytes are compared against
the runtime-overhead run's far larger blocks at the same number of clients)."""


@dataclass(frozen=True)
class SystemPreset:
    """Every size the system benchmark uses; one object so a result file records all of it."""

    name: str
    # ---- runtime overhead and exchange (sections a, b): Ray vs the reference loop, side by side
    overhead_model: dict[str, Any]
    """``model`` section of the experiment config."""
    overhead_clients: int = 4
    """Also the sweep point the driver's bytes are compared at (so it must be in ``sweep_clients``)."""
    max_tokens: int = 64
    batch_size: int = 4
    max_train_examples: int = 200
    fixed_block: int = 14
    """The one block trained (the top one: backward stays short, as in the quick start)."""
    inner_steps: int = 4
    """Steps per block activation; the first of each is left out (it includes block activation)."""
    warmup_rounds: int = 1
    repeats: int = 3
    """Measured activations of the block, reference and Ray interleaved."""
    floor_repeats: int = 30
    cpus_per_client: float = 0.5
    reference_torch_threads: int | None = None
    """torch threads of the in-process reference loop; None: this process's default (all cores)."""
    # ---- memory (section d): one DECA client process and one full-model Adam process
    memory_model: dict[str, Any] = field(default_factory=lambda: {"name": "smollm2-135m"})
    memory_steps: int = 2
    # ---- traffic and scale (sections c, e): tiny LLaMA, ring, one full round
    sweep_clients: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    sweep_inner_steps: int = 3
    sweep_max_actors: int = 8
    """More clients than this share actors (virtual clients, ``runtime.clients_per_actor``)."""
    sweep_budget_s: float = 1200.0
    """Wall-clock budget of the whole sweep; points predicted to overrun it are skipped (recorded)."""
    sweep_model: dict[str, Any] = field(default_factory=lambda: dict(SWEEP_TINY))
    sweep_vocab: int = 512
    traffic_clients: int = 4
    """Sweep point whose full round gives the traffic section (ring: out-degree 2)."""

    def __post_init__(self) -> None:
        for name in ("overhead_clients", "traffic_clients"):
            if getattr(self, name) not in self.sweep_clients:
                raise ValueError(f"{name}={getattr(self, name)} must be one of sweep_clients {self.sweep_clients}: "
                                 "sections c and e read that sweep point")
        if min(self.inner_steps, self.sweep_inner_steps) < 2:
            raise ValueError("inner_steps and sweep_inner_steps must be >= 2: the first step of each block "
                             "activation is left out of every timing")
        if self.repeats < 1 or len(self.sweep_clients) < 2:
            raise ValueError("need repeats >= 1 and at least two sweep_clients to fit a growth exponent")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = SystemPreset(name="full", overhead_model={"name": "smollm2-135m"})

QUICK = SystemPreset(
    name="quick",
    overhead_model={"name": "tiny-llama", "tiny": {"num_layers": 4, "hidden_size": 64, "num_heads": 4,
                                                   "num_kv_heads": 2, "intermediate_size": 128}},
    overhead_clients=2,  # two actors fewer to start: actor start-up dominates a quick run
    fixed_block=1,
    inner_steps=3,
    repeats=1,
    floor_repeats=10,
    memory_model={"name": "tiny-llama", "tiny": {"num_layers": 4, "hidden_size": 64, "num_heads": 4,
                                                 "num_kv_heads": 2, "intermediate_size": 128}},
    sweep_clients=(2, 4),
    sweep_max_actors=2,  # the 4-client point runs two virtual clients per actor
    sweep_inner_steps=2,
    sweep_budget_s=120.0,
)
