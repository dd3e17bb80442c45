"""Topologies and mixing matrices: hand-checkable weights, spectra, validation and removal."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import networkx as nx
import pytest
import torch

from deca_ray.algorithm import topology as topology_module
from deca_ray.algorithm.topology import (
    KINDS,
    build_topology,
    mixing_matrix,
    remove_clients,
    spectral_gap,
    validate_mixing_matrix,
)
from deca_ray.errors import TopologyError


def _assert_allclose(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-12) -> None:
    # plain allclose: torch.testing.assert_close costs ~1 s of lazy imports on first use
    assert actual.shape == expected.shape, actual.shape
    assert torch.allclose(actual, expected, rtol=0, atol=atol), actual


def _assert_doubly_stochastic(W: torch.Tensor) -> None:
    ones = torch.ones(W.shape[0], dtype=torch.float64)
    _assert_allclose(W.sum(dim=1), ones)
    _assert_allclose(W.sum(dim=0), ones)
    assert (W >= 0).all()


@pytest.mark.parametrize("seed", range(20))
def test_metropolis_hastings_is_symmetric_and_doubly_stochastic_on_random_graphs(seed):
    # Prepare: connected ER graphs of sizes 3..12 with varied density
    num_clients = 3 + seed % 10
    edge_probability = 0.3 + 0.03 * seed

    # Execute
    topology = build_topology(
        "erdos_renyi", num_clients, edge_probability=edge_probability, seed=seed
    )
    W = topology.mixing_matrix()

    # Assert
    assert torch.equal(W, W.T)
    _assert_doubly_stochastic(W)
    degree = dict(topology.graphs[0].degree)
    for i, j in topology.edges():
        assert W[i, j].item() == pytest.approx(1 / (1 + max(degree[i], degree[j])))


def test_metropolis_hastings_weights_on_a_path_by_hand():
    # Prepare: path 0 - 1 - 2, degrees 1, 2, 1 -> every edge weight 1/3
    graph = nx.path_graph(3)

    # Execute
    W = mixing_matrix(graph, "metropolis_hastings")

    # Assert
    third = 1 / 3
    expected = torch.tensor(
        [[2 * third, third, 0], [third, third, third], [0, third, 2 * third]], dtype=torch.float64
    )
    _assert_allclose(W, expected)


@pytest.mark.parametrize("num_clients", [3, 4, 5, 8, 12])
def test_ring_spectral_gap_matches_closed_form(num_clients):
    # Prepare: MH on a ring gives 1/3 everywhere, eigenvalues 1/3 + 2/3·cos(2πk/n)
    n = num_clients
    eigenvalues = [1 / 3 + 2 / 3 * math.cos(2 * math.pi * k / n) for k in range(n)]
    expected_gap = 1 - sorted((abs(v) for v in eigenvalues), reverse=True)[1]

    # Execute
    topology = build_topology("ring", num_clients)

    # Assert
    W = topology.mixing_matrix()
    _assert_allclose(W[W > 0], torch.full((3 * num_clients,), 1 / 3, dtype=torch.float64))
    assert topology.spectral_gap() == pytest.approx(expected_gap, abs=1e-12)


def test_erdos_renyi_is_deterministic_by_seed_and_connected():
    # Execute
    first = build_topology("erdos_renyi", 10, edge_probability=0.3, seed=7)
    again = build_topology("erdos_renyi", 10, edge_probability=0.3, seed=7)
    others = [build_topology("erdos_renyi", 10, edge_probability=0.3, seed=s) for s in range(8, 12)]

    # Assert
    assert first.edges() == again.edges()
    assert any(other.edges() != first.edges() for other in others)
    assert nx.is_connected(first.graphs[0])


def test_impossible_erdos_renyi_raises_with_what_to_change():
    # Execute / Assert: 20 clients with p = 0.01 are never connected in 3 samples
    with pytest.raises(TopologyError, match="disconnected in all 3 samples") as error:
        build_topology("erdos_renyi", 20, edge_probability=0.01, max_resamples=3)
    assert "edge_probability" in str(error.value) and "max_resamples" in str(error.value)


def test_disconnected_custom_graph_names_its_components():
    # Execute / Assert
    with pytest.raises(TopologyError) as error:
        build_topology("custom", 5, edges=[(0, 1), (2, 3), (3, 4)])
    message = str(error.value)
    assert "components {0, 1} and {2, 3, 4}" in message
    assert "add an edge between them" in message


def test_custom_graph_rejects_out_of_range_clients():
    with pytest.raises(TopologyError, match=r"clients are 0\.\.2"):
        build_topology("custom", 3, edges=[(0, 1), (1, 3)])


@pytest.mark.parametrize("num_clients", [2, 3, 5, 6, 8, 16])
def test_one_peer_exponential_is_doubly_stochastic_each_step(num_clients):
    # Execute
    topology = build_topology("one_peer_exponential", num_clients)

    # Assert: period ceil(log2 n); each client sends to exactly one peer with weight 1/2
    assert topology.period == max(1, math.ceil(math.log2(num_clients)))
    for step in range(topology.period):
        W = topology.mixing_matrix(step)
        _assert_doubly_stochastic(W)
        hop = 2 ** (step % topology.period)
        for client in range(num_clients):
            assert topology.out_neighbours(client, step) == [(client + hop) % num_clients]
            assert topology.in_neighbours(client, step) == [((client - hop) % num_clients, 0.5)]
            assert topology.self_weight(client, step) == 0.5


@pytest.mark.parametrize("num_clients", [2, 4, 8, 16])
def test_one_peer_exponential_averages_exactly_over_a_period_for_powers_of_two(num_clients):
    # Prepare
    topology = build_topology("one_peer_exponential", num_clients)

    # Execute
    product = torch.eye(num_clients, dtype=torch.float64)
    for step in range(topology.period):
        product = topology.mixing_matrix(step) @ product

    # Assert
    _assert_allclose(product, torch.full_like(product, 1 / num_clients), atol=1e-15)


def test_one_peer_exponential_is_not_symmetric_but_time_varying():
    topology = build_topology("one_peer_exponential", 8)
    W = topology.mixing_matrix(1)
    assert topology.is_time_varying and topology.is_directed
    assert not torch.equal(W, W.T)
    assert torch.equal(topology.mixing_matrix(4), W)  # step 4 = step 1 of the next period


def test_removal_reweights_survivors_and_keeps_their_ids():
    # Prepare: ring of 5; removing 2 leaves the path 3 - 4 - 0 - 1
    ring = build_topology("ring", 5)

    # Execute
    path = remove_clients(ring, [2])

    # Assert: ends have degree 1, inner nodes 2 -> every edge 1/3, ends keep 2/3
    assert path.clients == (0, 1, 3, 4)
    assert path.edges() == [(0, 1), (0, 4), (3, 4)]
    assert path.in_neighbours(0) == [(1, pytest.approx(1 / 3)), (4, pytest.approx(1 / 3))]
    assert path.self_weight(1) == pytest.approx(2 / 3)
    assert path.self_weight(3) == pytest.approx(2 / 3)
    _assert_doubly_stochastic(path.mixing_matrix())


def test_removing_the_star_hub_raises():
    star = build_topology("star", 4)
    expected = r"components \{1\}, \{2\} and \{3\}; removing clients \[0\]"
    with pytest.raises(TopologyError, match=expected):
        remove_clients(star, [0])


def test_removal_rebuilds_one_peer_schedule_over_survivors():
    topology = remove_clients(build_topology("one_peer_exponential", 5), [1])
    assert topology.clients == (0, 2, 3, 4)
    assert topology.period == 2
    assert topology.out_neighbours(4, step=0) == [0]  # position 3 -> position 0
    assert topology.out_neighbours(0, step=1) == [3]  # position 0 -> position 2


@pytest.mark.parametrize(
    ("shape", "expected_degree"), [((3, 4), 4), ((2, 4), 3), ((1, 5), 2), ((2, 2), 2)]
)
def test_torus_neighbour_counts(shape, expected_degree):
    # Prepare: a side of length 2 wraps onto the same neighbour, a side of 1 adds none
    rows, cols = shape

    # Execute
    topology = build_topology("torus", rows * cols, torus_shape=shape)

    # Assert
    for client in topology.clients:
        assert len(topology.in_neighbours(client)) == expected_degree
        assert topology.out_degree(client) == expected_degree


def test_torus_default_shape_is_most_square():
    assert len(build_topology("torus", 12).edges()) == 24  # 3 x 4: 12 nodes of degree 4
    assert len(build_topology("torus", 8).edges()) == 12  # 2 x 4: degree 3


def test_max_degree_weights_on_a_star():
    # Prepare: star with hub 0 and 3 leaves, max degree 3 -> every edge 1/4
    topology = build_topology("star", 4, weights="max_degree")

    # Execute
    W = topology.mixing_matrix()

    # Assert: the hub keeps 1 - 3/4, each leaf keeps 3/4
    assert W[0].tolist() == [0.25, 0.25, 0.25, 0.25]
    assert [W[i, i].item() for i in range(1, 4)] == [0.75, 0.75, 0.75]
    _assert_doubly_stochastic(W)


def test_uniform_neighbour_is_row_stochastic_only_and_validation_says_so():
    # Prepare: on a star the hub gives each neighbour 1/4, each leaf gives the hub 1/2
    topology = build_topology("star", 4, weights="uniform_neighbour")
    W = topology.mixing_matrix()

    # Execute / Assert
    assert W[0, 1].item() == 0.25 and W[1, 0].item() == 0.5
    _assert_allclose(W.sum(dim=1), torch.ones(4, dtype=torch.float64))
    with pytest.raises(TopologyError, match="only row-stochastic.*metropolis_hastings"):
        validate_mixing_matrix(W, topology.graphs[0])


def test_validation_rejects_weight_off_the_edges():
    W = torch.full((3, 3), 1 / 3, dtype=torch.float64)
    with pytest.raises(TopologyError, match=r"w\[0,2\]=0.333 but there is no edge 2 -> 0"):
        validate_mixing_matrix(W, nx.path_graph(3))


def test_validation_rejects_negative_weights():
    W = torch.tensor([[1.5, -0.5], [-0.5, 1.5]], dtype=torch.float64)
    with pytest.raises(TopologyError, match="negative weight"):
        validate_mixing_matrix(W)


@pytest.mark.parametrize("kind", KINDS)
def test_single_client_gives_identity_for_every_kind(kind):
    topology = build_topology(kind, 1, edges=[])
    assert topology.mixing_matrix().tolist() == [[1.0]]
    assert topology.in_neighbours(0) == []
    assert topology.spectral_gap() == 1.0


@pytest.mark.parametrize("kind", ["ring", "torus", "exponential", "bipartite", "complete"])
def test_two_clients_share_one_edge(kind):
    topology = build_topology(kind, 2)
    assert topology.edges() == [(0, 1)]
    assert topology.mixing_matrix().tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_exponential_and_bipartite_edges():
    exponential = build_topology("exponential", 8)
    bipartite = build_topology("bipartite", 4)
    assert [j for j, _ in exponential.in_neighbours(0)] == [1, 2, 4, 6, 7]  # 0 ± 1, 2, 4
    assert bipartite.edges() == [(0, 2), (0, 3), (1, 2), (1, 3)]


def test_complete_graph_spectral_gap_is_one():
    assert spectral_gap(build_topology("complete", 6).mixing_matrix()) == pytest.approx(1.0)


def test_unknown_kind_and_scheme_list_the_choices():
    with pytest.raises(TopologyError, match="choose one of ring, torus"):
        build_topology("hypercube", 4)
    with pytest.raises(TopologyError, match="choose one of metropolis_hastings"):
        build_topology("ring", 4, weights="laplacian")


def test_topology_module_imports_only_torch_numpy_networkx():
    # Prepare: a static check (importing in a subprocess would take seconds), over topology.py and
    # the two modules it was split into (which it may import)
    siblings = {"deca_ray.algorithm.graphs", "deca_ray.algorithm.mixing_weights", "deca_ray.algorithm.choices"}
    sources = [Path(topology_module.__file__).read_text()]
    sources += [Path(topology_module.__file__).with_name(f"{name.rsplit('.', 1)[1]}.py").read_text() for name in siblings]
    allowed = {"__future__", "math", "collections.abc", "dataclasses", "functools", "typing"}
    allowed |= {"networkx", "numpy", "torch", "deca_ray.errors"} | siblings

    # Execute
    imported = set()
    for node in (node for source in sources for node in ast.walk(ast.parse(source))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)

    # Assert
    assert imported <= allowed, imported - allowed
