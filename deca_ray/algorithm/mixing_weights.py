"""Gossip mixing matrices W over a graph, their validation, and the spectral gap (pure torch).

``W[i, j] = w_ij`` is the weight client i puts on client j's block (ALGORITHM.md Eq. 7), rows
and columns in sorted node order. Undirected graphs get symmetric weights (Metropolis–Hastings
or max-degree), doubly stochastic so gossip keeps the client average; ``uniform_neighbour`` is
only row-stochastic on irregular graphs (a baseline, see ``topology``'s docstring).
"""

from __future__ import annotations

import networkx as nx
import torch

from deca_ray.algorithm.choices import WEIGHT_SCHEMES
from deca_ray.errors import TopologyError


def check_scheme(scheme: str) -> None:
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
    check_scheme(scheme)
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


def directed_mixing_matrix(graph: nx.DiGraph) -> torch.Tensor:
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
