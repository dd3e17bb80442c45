"""PNG artifacts for humans: the communication graph and the loss curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: clusters and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402


def draw_topology(description: dict, path: Path) -> Path:
    """The graph with its spectral gap in the title (``description`` from TopologyService.describe)."""
    graph = nx.Graph()
    graph.add_nodes_from(description["clients"])
    graph.add_edges_from(tuple(edge) for edge in description["edges"])
    figure, axes = plt.subplots(figsize=(4, 4))
    nx.draw_circular(graph, ax=axes, with_labels=True, node_color="#8ecae6", node_size=500)
    axes.set_title(f"{description['kind']} ({description['weights']}), gap {description['spectral_gap']:.3f}")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def draw_loss_curves(history: list[dict], path: Path) -> Path:
    """Mean and per-client training loss over inner steps."""
    figure, axes = plt.subplots(figsize=(7, 4))
    steps = [record["global_step"] for record in history]
    for client in sorted({client for record in history for client in record["clients"]}):
        points = [(r["global_step"], r["client_losses"][r["clients"].index(client)]) for r in history if client in r["clients"]]
        axes.plot(*zip(*points, strict=True), alpha=0.35, linewidth=1, label=f"client {client}")
    axes.plot(steps, [r["mean_loss"] for r in history], color="black", linewidth=2, label="mean")
    axes.set_xlabel("inner step")
    axes.set_ylabel("training loss (answer tokens)")
    axes.legend(fontsize=7, ncol=2)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
