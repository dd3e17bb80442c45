"""Every allowed-value list of the algorithm, once: the config validates against these, the code branches on them.

Pure typing (no torch), so the config layer can import it without loading the algorithm.
"""

from __future__ import annotations

from typing import Literal, get_args

Variant = Literal["full", "without_bma", "trivial_bma"]
"""BMA variant: the paper's full correction, none (β1 = β2 = 1), or moments built from h alone."""
HSignal = Literal["update", "consensus_gap"]
"""What h measures: ``update`` = x_k − x_new (the local step plus the consensus pull),
``consensus_gap`` = x½ − x_new (the difference between the local and the aggregated block)."""
HSign = Literal["old_minus_new", "new_minus_old"]
"""``old_minus_new``: x_k − x_new (or x½ − x_new); ``new_minus_old`` the opposite."""
HScale = Literal["raw", "lr", "unit_norm", "gradient_units", "relative_to_step"]
"""Scale of h: as is; ÷γ; unit norm over the block; ·(√v̂′ + ε)/γ (an Adam step back into
gradient units); ÷‖x_k − x½‖ (relative to this step's own local move)."""
MomentLifetime = Literal["per_activation", "persistent"]
BlockOrder = Literal["ascending", "descending", "random", "fixed"]
TopologyKind = Literal[
    "ring", "torus", "complete", "star", "bipartite", "erdos_renyi", "exponential", "one_peer_exponential", "custom"
]
WeightScheme = Literal["metropolis_hastings", "max_degree", "uniform_neighbour"]

VARIANTS: tuple[str, ...] = get_args(Variant)
H_SIGNALS: tuple[str, ...] = get_args(HSignal)
H_SIGNS: tuple[str, ...] = get_args(HSign)
H_SCALES: tuple[str, ...] = get_args(HScale)
BLOCK_ORDERS: tuple[str, ...] = get_args(BlockOrder)
TOPOLOGY_KINDS: tuple[str, ...] = get_args(TopologyKind)
WEIGHT_SCHEMES: tuple[str, ...] = get_args(WeightScheme)
