"""Sizes of the system benchmark: ``full`` (issue 5's configuration) and ``quick`` (development, CI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SMALL_TINY = {"num_layers": 4, "hidden_size": 32, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}
"""Tiny LLaMA of the scale sweep."""
LARGE_TINY = {"num_layers": 4, "hidden_size": 128, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 256}
"""The same depth with ~16x larger blocks: the driver's bytes must not follow."""


@dataclass(frozen=True)
class SystemPreset:
    """Every size the system benchmark uses; one object so a result file records all of it."""

    name: str
    # ---- runtime overhead and exchange (sections a, b): Ray vs the reference loop, side by side
    overhead_model: dict[str, Any]
    """``model`` section of the experiment config."""
    overhead_clients: int = 4
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
    # ---- memory (section d): one DECA client process and one full-model Adam process
    memory_model: dict[str, Any] = field(default_factory=lambda: {"name": "smollm2-135m"})
    memory_steps: int = 2
    # ---- traffic and scale (sections c, e): tiny LLaMA, ring, one full round
    sweep_clients: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    sweep_inner_steps: int = 3
    sweep_budget_s: float = 1200.0
    """Wall-clock budget of the whole sweep; points predicted to overrun it are skipped (recorded)."""
    sweep_small: dict[str, Any] = field(default_factory=lambda: dict(SMALL_TINY))
    sweep_large: dict[str, Any] = field(default_factory=lambda: dict(LARGE_TINY))
    sweep_vocab: int = 512
    block_size_clients: int = 4
    """Client count at which the sweep is rerun with the large blocks."""
    traffic_clients: int = 4
    """Sweep point whose full round gives the traffic section (ring: out-degree 2)."""

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
    sweep_inner_steps=2,
    sweep_budget_s=120.0,
    block_size_clients=2,
)

PRESETS = {preset.name: preset for preset in (FULL, QUICK)}
