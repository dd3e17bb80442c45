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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np
import torch

from deca_ray.errors import TopologyError

KINDS = (
    "ring", "torus", "complete", "star", "bipartite",
    "erdos_renyi", "exponential", "one_peer_exponential", "custom",
)  # fmt: skip
WEIGHT_SCHEMES = ("metropolis_hastings", "max_degree", "uniform_neighbour")


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
        return [(other, w) for other, w in zip(self.clients, row) if w > 0 and other != client]

    def out_neighbours(self, client: int, step: int = 0) -> list[int]:
        """Clients that mix in ``client``'s block at this step (whom it must send to)."""
        column = self._matrix(step)[:, self._position[client]].tolist()
        return [other for other, w in zip(self.clients, column) if w > 0 and other != client]

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


# --- graph construction (nodes 0..n-1) ---------------------------------------------------


def most_square_shape(num_clients: int) -> tuple[int, int]:
    """rows × cols = num_clients with rows ≤ cols as close as possible (a prime gives 1 × n)."""
    rows = max(d for d in range(1, math.isqrt(num_clients) + 1) if num_clients % d == 0)
    return rows, num_clients // rows


def _torus_graph(num_clients: int, shape: tuple[int, int] | None) -> nx.Graph:
    rows, cols = shape if shape is not None else most_square_shape(num_clients)
    if rows < 1 or cols < 1 or rows * cols != num_clients:
        raise TopologyError(
            f"topology.torus_shape={rows}x{cols} has {rows * cols} nodes but "
            f"num_clients={num_clients}; pick rows × cols = {num_clients} or leave it unset"
        )
    # periodic=True merges the duplicate wrap-around edges of a 2-wide side (a Graph keeps one)
    grid = nx.grid_2d_graph(rows, cols, periodic=True)
    return nx.relabel_nodes(grid, {(r, c): r * cols + c for r, c in grid.nodes})


def _exponential_graph(num_clients: int) -> nx.Graph:
    graph = nx.empty_graph(num_clients)
    hops = [2**k for k in range(num_clients.bit_length()) if 2**k < num_clients]
    graph.add_edges_from((i, (i + hop) % num_clients) for i in range(num_clients) for hop in hops)
    return graph


def one_peer_period(num_clients: int) -> int:
    """ceil(log2 n) steps (at least 1): the hops 1, 2, 4, ... < n."""
    return max(1, (num_clients - 1).bit_length())


def _one_peer_graphs(clients: Sequence[int]) -> tuple[nx.DiGraph, ...]:
    """Step s: the client at position i sends to the one at (i + 2^s) mod n."""
    n = len(clients)
    graphs = []
    for step in range(one_peer_period(n)):
        graph = nx.DiGraph()
        graph.add_nodes_from(clients)
        if n > 1:
            hop = 2**step
            graph.add_edges_from((clients[i], clients[(i + hop) % n]) for i in range(n))
        graphs.append(graph)
    return tuple(graphs)


def _custom_graph(num_clients: int, edges: Iterable[tuple[int, int]] | None) -> nx.Graph:
    if edges is None:
        raise TopologyError("topology.type=custom needs topology.edges, e.g. [[0, 1], [1, 2]]")
    graph = nx.empty_graph(num_clients)
    for u, v in edges:
        if not (0 <= u < num_clients and 0 <= v < num_clients):
            raise TopologyError(
                f"topology.edges has ({u}, {v}), but clients are 0..{num_clients - 1}"
            )
        if u == v:
            raise TopologyError(
                f"topology.edges has self-loop ({u}, {v}); remove it (w_ii is implicit)"
            )
        graph.add_edge(u, v)
    return graph


def _erdos_renyi_graph(num_clients: int, p: float, seed: int, max_resamples: int) -> nx.Graph:
    """G(n, p) from seeds derived from (seed, attempt), the first connected one of max_resamples."""
    if not 0 <= p <= 1:
        raise TopologyError(f"topology.edge_probability={p} must lie in [0, 1]")
    for attempt in range(max_resamples):
        graph = nx.gnp_random_graph(num_clients, p, seed=np.random.default_rng([seed, attempt]))
        if nx.is_connected(graph):
            return graph
    threshold = math.log(num_clients) / num_clients
    raise TopologyError(
        f"erdos_renyi graph with num_clients={num_clients}, edge_probability={p} was disconnected "
        f"in all {max_resamples} samples (seed={seed}); raise topology.edge_probability "
        f"(connectivity needs well above ln(n)/n = {threshold:.2f}) or topology.max_resamples"
    )


# --- mixing weights and checks -----------------------------------------------------------


def _check_scheme(scheme: str) -> None:
    if scheme not in WEIGHT_SCHEMES:
        raise TopologyError(
            f"unknown topology.weights={scheme!r}; choose one of {', '.join(WEIGHT_SCHEMES)}"
        )


def mixing_matrix(graph: nx.Graph, scheme: str) -> torch.Tensor:
    """W (n, n) float64 for an undirected graph, rows/cols in sorted node order.

    Off-diagonal weights follow ``scheme``; the self weight takes the rest: w_ii = 1 − Σ_j w_ij.
    """
    if graph.is_directed():
        raise TopologyError("mixing_matrix needs an undirected graph (one-peer graphs weigh 1/2)")
    _check_scheme(scheme)
    index = {node: i for i, node in enumerate(sorted(graph.nodes))}
    degree = dict(graph.degree)
    max_degree = max(degree.values(), default=0)
    weights = torch.zeros(len(index), len(index), dtype=torch.float64)
    for u, v in graph.edges:
        for a, b in ((u, v), (v, u)):  # row a, column b
            if scheme == "metropolis_hastings":
                weights[index[a], index[b]] = 1.0 / (1 + max(degree[a], degree[b]))
            elif scheme == "max_degree":
                weights[index[a], index[b]] = 1.0 / (1 + max_degree)
            else:  # uniform_neighbour: row-stochastic only (see module docstring)
                weights[index[a], index[b]] = 1.0 / (1 + degree[a])
    return weights + torch.diag(1.0 - weights.sum(dim=1))


def _directed_mixing_matrix(graph: nx.DiGraph) -> torch.Tensor:
    """Each client keeps 1/(1+in-degree) and gives the same to each sender (1/2 for one-peer)."""
    index = {node: i for i, node in enumerate(sorted(graph.nodes))}
    weights = torch.zeros(len(index), len(index), dtype=torch.float64)
    for receiver in graph.nodes:
        share = 1.0 / (1 + graph.in_degree(receiver))
        weights[index[receiver], index[receiver]] = share
        for sender in graph.predecessors(receiver):
            weights[index[receiver], index[sender]] = share
    return weights


def validate_mixing_matrix(
    W: torch.Tensor,
    graph: nx.Graph | None = None,
    *,
    require_symmetric: bool = True,
    require_doubly_stochastic: bool = True,
    atol: float = 1e-9,
) -> None:
    """Raise TopologyError unless W is a usable gossip matrix (on ``graph``'s edges, if given)."""
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise TopologyError(f"mixing matrix must be square, got shape {tuple(W.shape)}")
    if (W < -atol).any():
        i, j = (int(k) for k in torch.nonzero(W < -atol)[0])
        raise TopologyError(f"mixing matrix has negative weight w[{i},{j}]={float(W[i, j]):.3g}")
    row_error = (W.sum(dim=1) - 1).abs()
    if (row_error > atol).any():
        i = int(row_error.argmax())
        raise TopologyError(f"row {i} of the mixing matrix sums to {float(W[i].sum()):.6g}, not 1")
    column_error = (W.sum(dim=0) - 1).abs()
    if require_doubly_stochastic and (column_error > atol).any():
        j = int(column_error.argmax())
        raise TopologyError(
            f"column {j} of the mixing matrix sums to {float(W[:, j].sum()):.6g}, not 1: W is only "
            "row-stochastic, so gossip would not keep the client average (uniform_neighbour "
            "weights do this on irregular graphs); use weights=metropolis_hastings or max_degree"
        )
    if require_symmetric and not torch.allclose(W, W.T, rtol=0, atol=atol):
        raise TopologyError(
            "mixing matrix is not symmetric; use weights=metropolis_hastings or max_degree"
        )
    if graph is not None:
        _check_support(W, graph, atol)


def _check_support(W: torch.Tensor, graph: nx.Graph, atol: float) -> None:
    nodes = sorted(graph.nodes)
    if len(nodes) != W.shape[0]:
        raise TopologyError(
            f"mixing matrix is {W.shape[0]}x{W.shape[0]} but the graph has {len(nodes)} nodes"
        )
    for i, j in torch.nonzero(W > atol).tolist():
        receiver, sender = nodes[i], nodes[j]
        if i != j and not graph.has_edge(sender, receiver):
            raise TopologyError(
                f"mixing matrix gives weight w[{receiver},{sender}]={float(W[i, j]):.3g} "
                f"but there is no edge {sender} -> {receiver}"
            )


def check_connected(graph: nx.Graph, what: str, fix: str) -> None:
    """Raise TopologyError naming the components if ``graph`` is (strongly) disconnected."""
    if graph.number_of_nodes() == 0:
        raise TopologyError(f"{what} has no clients")
    if graph.is_directed():
        components = list(nx.strongly_connected_components(graph))
    else:
        components = list(nx.connected_components(graph))
    if len(components) == 1:
        return
    names = ["{" + ", ".join(map(str, sorted(c))) + "}" for c in sorted(components, key=min)]
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    raise TopologyError(f"{what} is disconnected: components {listed}; {fix}")


def spectral_gap(W: torch.Tensor) -> float:
    """1 − |λ2|, λ2 the eigenvalue of W with the second-largest magnitude (1.0 for one client).

    For a non-symmetric W (one-peer, uniform_neighbour) the eigenvalues are complex and
    1 − |λ2| is the asymptotic per-step consensus rate of repeating that same W.
    """
    if W.shape[0] == 1:
        return 1.0
    if torch.allclose(W, W.T):
        magnitudes = torch.linalg.eigvalsh(W.double()).abs()
    else:
        magnitudes = torch.linalg.eigvals(W.double()).abs()
    return float(1.0 - magnitudes.sort(descending=True).values[1])


# --- public constructors -----------------------------------------------------------------


def _make_topology(
    kind: str, clients: tuple[int, ...], scheme: str, graphs: tuple[nx.Graph, ...], fix: str
) -> Topology:
    """Weight, validate and wrap graphs whose nodes are ``clients``."""
    union = nx.compose_all(graphs)
    check_connected(union, f"{kind} graph" if len(graphs) == 1 else f"{kind} union graph", fix)
    matrices = []
    for graph in graphs:
        directed = graph.is_directed()
        weights = _directed_mixing_matrix(graph) if directed else mixing_matrix(graph, scheme)
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
    _check_scheme(weights)
    n = num_clients
    clients = tuple(range(n))
    builders = {
        "ring": lambda: nx.cycle_graph(n),
        "torus": lambda: _torus_graph(n, torus_shape),
        "complete": lambda: nx.complete_graph(n),
        "star": lambda: nx.star_graph(n - 1),  # hub 0
        "bipartite": lambda: nx.complete_bipartite_graph(n // 2, n - n // 2),
        "erdos_renyi": lambda: _erdos_renyi_graph(n, edge_probability, seed, max_resamples),
        "exponential": lambda: _exponential_graph(n),
        "custom": lambda: _custom_graph(n, edges),
    }
    if kind == "one_peer_exponential":
        graphs: tuple[nx.Graph, ...] = _one_peer_graphs(clients)
    elif kind in builders:
        graph = builders[kind]()
        graph.remove_edges_from(list(nx.selfloop_edges(graph)))  # cycle_graph(1) has one
        graphs = (graph,)
    else:
        raise TopologyError(f"unknown topology.type={kind!r}; choose one of {', '.join(KINDS)}")
    fix = "add an edge between them or use topology.type=ring"
    return _make_topology(kind, clients, weights, graphs, fix)


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
        graphs: tuple[nx.Graph, ...] = _one_peer_graphs(survivors)
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
