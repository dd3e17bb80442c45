"""TopologyService: owns the graph and mixing weights; answers who mixes with whom at each step.

A plain class, run as a Ray actor by the runtime so that every party asks one owner (graphs
change over time and when clients are dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

from deca_ray.algorithm.topology import Topology, remove_clients


@dataclass(frozen=True)
class MixPlan:
    """Client i's part of Eq. 7 at one step: its own weight and (neighbour, weight) pairs."""

    client: int
    self_weight: float
    neighbours: tuple[tuple[int, float], ...]
    out_degree: int

    def without(self, late: set[int]) -> MixPlan:
        """Mix over the neighbours that arrived: their weights and ours renormalised to sum to 1."""
        kept = tuple((j, w) for j, w in self.neighbours if j not in late)
        total = self.self_weight + sum(w for _, w in kept)
        return MixPlan(self.client, self.self_weight / total, tuple((j, w / total) for j, w in kept), self.out_degree)


class TopologyService:
    """The current topology, its schedule over steps, and removals of clients."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._plans: dict[int, list[MixPlan]] = {}  # step % period -> plans (static graphs: one entry)

    def plans(self, step: int) -> list[MixPlan]:
        """Every active client's mixing plan at ``step`` (cached per step of the period)."""
        key = step % self.topology.period
        if key not in self._plans:
            self._plans[key] = [self._plan(client, key) for client in self.topology.clients]
        return self._plans[key]

    def remove_clients(self, clients: list[int]) -> list[MixPlan]:
        """Drop ``clients`` and re-weight the survivors (raises TopologyError if they disconnect)."""
        self.topology = remove_clients(self.topology, clients)
        self._plans.clear()
        return self.plans(0)

    def clients(self) -> tuple[int, ...]:
        return self.topology.clients

    def spectral_gap(self, step: int = 0) -> float:
        return self.topology.spectral_gap(step)

    def describe(self) -> dict:
        """JSON-friendly summary: kind, clients, edges, weights, spectral gap."""
        return {
            "kind": self.topology.kind,
            "weights": self.topology.weights_scheme,
            "clients": list(self.topology.clients),
            "edges": [list(edge) for edge in self.topology.edges(0)],
            "mixing_matrix": self.topology.mixing_matrix(0).tolist(),
            "spectral_gap": self.topology.spectral_gap(0),
            "time_varying": self.topology.is_time_varying,
        }

    def _plan(self, client: int, step: int) -> MixPlan:
        topology = self.topology
        return MixPlan(
            client=client,
            self_weight=topology.self_weight(client, step),
            neighbours=tuple(topology.in_neighbours(client, step)),
            out_degree=topology.out_degree(client, step),
        )
