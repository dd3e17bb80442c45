"""Every allowed-value list of the algorithm, once: the config validates against these, the code branches on them.

Pure typing (no torch), so the config layer can import it without loading the algorithm.
"""

from __future__ import annotations

from typing import Literal, get_args

Variant = Literal["full", "without_bma", "trivial_bma"]
"""BMA variant: the paper's full correction, none (β1 = β2 = 1), or moments built from h alone."""
HSign = Literal["old_minus_new", "new_minus_old"]
HScale = Literal["raw", "lr", "unit_norm"]
"""Scale of h: as is, ÷γ, or unit norm over the block."""
MomentLifetime = Literal["per_activation", "persistent"]
BlockOrder = Literal["ascending", "descending", "random", "fixed"]
TopologyKind = Literal[
    "ring", "torus", "complete", "star", "bipartite", "erdos_renyi", "exponential", "one_peer_exponential", "custom"
]
WeightScheme = Literal["metropolis_hastings", "max_degree", "uniform_neighbour"]

VARIANTS: tuple[str, ...] = get_args(Variant)
H_SIGNS: tuple[str, ...] = get_args(HSign)
H_SCALES: tuple[str, ...] = get_args(HScale)
BLOCK_ORDERS: tuple[str, ...] = get_args(BlockOrder)
TOPOLOGY_KINDS: tuple[str, ...] = get_args(TopologyKind)
WEIGHT_SCHEMES: tuple[str, ...] = get_args(WeightScheme)
