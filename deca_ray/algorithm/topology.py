"""Communication graphs over clients and their gossip mixing matrices W (pure networkx/torch).

Convention: ``W[i, j] = w_ij`` is the weight client i puts on client j's block when it
mixes (ALGORITHM.md Eq. 7: ``x_new_i = Σ_j w_ij · x½_j``), so row i lists whose blocks
client i receives ("in-neighbours") and column j lists who receives client j's block.
Rows and columns follow the sorted client ids of ``Topology.clients``; ids survive
client removal unchanged, so after removing client 3 the ids are (0, 1, 2, 4, ...).

Undirected graphs get symmetric weights (Metropolis–Hastings or max-degree), which are
doubly stochastic: gossip keeps the client average, as DECA's analysis assumes.
``uniform_neighbour`` (w_ij = 1/(deg_i+1)) is allowed as a baseline but is only
row-stochastic on irregular graphs: gossip still reaches consensus, but on a
degree-weighted average (high-degree clients count more) instead of the plain mean.
``one_peer_exponential`` is directed and time-varying: at step s client i sends to
(i + 2^(s mod ceil(log2 n))) mod n and every client keeps 1/2 and takes 1/2 from its one
sender, so W_s = (I + P_s)/2 is doubly stochastic but not symmetric; all three weight
schemes give this same 1/2 on such a graph. Over one period the union graph is connected,
and for n a power of two the product of the period's matrices is exactly 11ᵀ/n.

The graphs themselves are built in ``graphs`` and weighted / validated in ``mixing_weights``;
this module joins them and re-exports their public names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import torch

from deca_ray.algorithm.graphs import (  # noqa: F401  (re-exported: deca_ray.algorithm.topology's names)
    KINDS,
    build_graphs,
    check_connected,
    most_square_shape,
    one_peer_graphs,
    one_peer_period,
)
from deca_ray.algorithm.mixing_weights import (  # noqa: F401  (re-exported, as above)
    WEIGHT_SCHEMES,
    check_scheme,
    directed_mixing_matrix,
    mixing_matrix,
    spectral_gap,
    validate_mixing_matrix,
)
from deca_ray.errors import TopologyError

__all__ = [
    "ISOLATED", "KINDS", "WEIGHT_SCHEMES", "Topology", "build_topology", "check_connected", "isolated_topology",
    "mixing_matrix", "most_square_shape", "one_peer_period", "remove_clients", "spectral_gap",
    "validate_mixing_matrix",
]  # fmt: skip


@dataclass(frozen=True, eq=False)
class Topology:
    """A (possibly time-varying) communication graph and its mixing matrices.

    ``graphs[s]`` / ``matrices[s]`` belong to steps s, s + period, s + 2·period, ...;
    static kinds have period 1. Graph nodes are client ids; a directed edge j → i means
    "j sends its block to i". Treat ``matrices`` as read-only; ``mixing_matrix`` copies.
    """

    kind: str
    clients: tuple[int, ...]
    weights_scheme: str
    graphs: tuple[nx.Graph, ...]
    matrices: tuple[torch.Tensor, ...]  # each (n, n) float64

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    @property
    def period(self) -> int:
        return len(self.matrices)

    @property
    def is_time_varying(self) -> bool:
        return self.period > 1

    @property
    def is_directed(self) -> bool:
        return self.graphs[0].is_directed()

    @cached_property
    def _position(self) -> dict[int, int]:
        return {client: index for index, client in enumerate(self.clients)}

    def _matrix(self, step: int) -> torch.Tensor:
        return self.matrices[step % self.period]

    def mixing_matrix(self, step: int = 0) -> torch.Tensor:
        """W for this inner step, (n, n) float64, rows/cols in ``clients`` order."""
        return self._matrix(step).clone()

    def in_neighbours(self, client: int, step: int = 0) -> list[tuple[int, float]]:
        """(j, w_ij) for every j != client with w_ij > 0: whose blocks ``client`` mixes in."""
        row = self._matrix(step)[self._position[client]].tolist()
        return [(other, w) for other, w in zip(self.clients, row, strict=True) if w > 0 and other != client]

    def out_neighbours(self, client: int, step: int = 0) -> list[int]:
        """Clients that mix in ``client``'s block at this step (whom it must send to)."""
        column = self._matrix(step)[:, self._position[client]].tolist()
        return [other for other, w in zip(self.clients, column, strict=True) if w > 0 and other != client]

    def out_degree(self, client: int, step: int = 0) -> int:
        return len(self.out_neighbours(client, step))

    def self_weight(self, client: int, step: int = 0) -> float:
        index = self._position[client]
        return float(self._matrix(step)[index, index])

    def spectral_gap(self, step: int = 0) -> float:
        return spectral_gap(self._matrix(step))

    def edges(self, step: int = 0) -> list[tuple[int, int]]:
        """Sorted edges for drawing/reporting: (sender, receiver) if directed, else (low, high)."""
        graph = self.graphs[step % self.period]
        if graph.is_directed():
            return sorted(graph.edges)
        return sorted((min(u, v), max(u, v)) for u, v in graph.edges)


def _make_topology(
    kind: str, clients: tuple[int, ...], scheme: str, graphs: tuple[nx.Graph, ...], fix: str
) -> Topology:
    """Weight, validate and wrap graphs whose nodes are ``clients``."""
    union = nx.compose_all(graphs)
    check_connected(union, f"{kind} graph" if len(graphs) == 1 else f"{kind} union graph", fix)
    matrices = []
    for graph in graphs:
        directed = graph.is_directed()
        weights = directed_mixing_matrix(graph) if directed else mixing_matrix(graph, scheme)
        row_only = scheme == "uniform_neighbour" and not directed
        validate_mixing_matrix(
            weights,
            graph,
            require_symmetric=not (directed or row_only),
            require_doubly_stochastic=not row_only,
        )
        matrices.append(weights)
    return Topology(kind, clients, scheme, graphs, tuple(matrices))


def build_topology(
    kind: str,
    num_clients: int,
    *,
    weights: str = "metropolis_hastings",
    edge_probability: float = 0.5,
    torus_shape: tuple[int, int] | None = None,
    edges: Iterable[tuple[int, int]] | None = None,
    seed: int = 0,
    max_resamples: int = 1000,
) -> Topology:
    """Build, weight and validate the graph ``kind`` over clients 0..num_clients-1."""
    if num_clients < 1:
        raise TopologyError(f"num_clients={num_clients}; a topology needs at least one client")
    check_scheme(weights)
    graphs = build_graphs(
        kind, num_clients, edge_probability=edge_probability, torus_shape=torus_shape, edges=edges,
        seed=seed, max_resamples=max_resamples,
    )
    fix = "add an edge between them or use topology.type=ring"
    return _make_topology(kind, tuple(range(num_clients)), weights, graphs, fix)


def remove_clients(topology: Topology, clients: Iterable[int]) -> Topology:
    """Drop ``clients`` and re-weight the survivors (same scheme); survivors keep their ids.

    A one-peer schedule is rebuilt over the survivors in id order (its hops are positions).
    """
    removed = set(clients)
    unknown = removed - set(topology.clients)
    if unknown:
        raise TopologyError(
            f"cannot remove unknown clients {sorted(unknown)}; clients are {list(topology.clients)}"
        )
    survivors = tuple(c for c in topology.clients if c not in removed)
    if not survivors:
        raise TopologyError(f"removing clients {sorted(removed)} leaves no client")
    if topology.kind == ISOLATED:
        return isolated_topology(survivors)
    if topology.kind == "one_peer_exponential":
        graphs: tuple[nx.Graph, ...] = one_peer_graphs(survivors)
    else:
        graphs = (topology.graphs[0].subgraph(survivors).copy(),)
    fix = f"removing clients {sorted(removed)} splits the survivors; no gossip reaches them all"
    return _make_topology(topology.kind, survivors, topology.weights_scheme, graphs, fix)


ISOLATED = "isolated"


def isolated_topology(clients: int | Sequence[int]) -> Topology:
    """No edges, W = I: every client trains alone (the no-communication reference).

    ``clients``: a count (ids 0..n-1) or the ids themselves (the survivors of a drop).
    """
    ids = tuple(range(clients)) if isinstance(clients, int) else tuple(clients)
    graph = nx.Graph()
    graph.add_nodes_from(ids)
    return Topology(ISOLATED, ids, "identity", (graph,), (torch.eye(len(ids), dtype=torch.float64),))
