"""Communication graphs over clients 0..n-1 (networkx): the kinds ``build_topology`` offers.

Nodes are client ids; an undirected edge means the two clients exchange blocks, a directed
edge j → i (one-peer graphs) means "j sends its block to i". Weights and validation live in
``mixing_weights``; ``topology`` puts the two together.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import networkx as nx
import numpy as np

from deca_ray.algorithm.choices import TOPOLOGY_KINDS
from deca_ray.errors import TopologyError

KINDS = TOPOLOGY_KINDS  # the config validates against the same list (choices.py)


def build_graphs(
    kind: str,
    num_clients: int,
    *,
    edge_probability: float,
    torus_shape: tuple[int, int] | None,
    edges: Iterable[tuple[int, int]] | None,
    seed: int,
    max_resamples: int,
) -> tuple[nx.Graph, ...]:
    """The graph(s) of ``kind``: one for static kinds, one per step of the period otherwise."""
    n = num_clients
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
        return one_peer_graphs(tuple(range(n)))
    if kind not in builders:
        raise TopologyError(f"unknown topology.type={kind!r}; choose one of {', '.join(KINDS)}")
    graph = builders[kind]()
    graph.remove_edges_from(list(nx.selfloop_edges(graph)))  # cycle_graph(1) has one
    return (graph,)


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


def one_peer_graphs(clients: Sequence[int]) -> tuple[nx.DiGraph, ...]:
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
