"""Render the newest cross-node result into BENCHMARKS.md between ``<!-- crossnode:begin/end -->``.

Every number comes from the result file (``benchmarks/system/crossnode.py``); nothing is measured here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.markdown import update_markdown
from benchmarks.results import newest_result
from benchmarks.system.crossnode import KIND
from benchmarks.system.report import _bytes, _number, _seconds


def render_newest_crossnode(results_dir: Path, markdown: Path) -> Path:
    """Write the newest ``crossnode-*.json`` of ``results_dir`` into ``markdown``; returns the result used."""
    result_path = newest_result(results_dir, kind=KIND)
    update_markdown(markdown, render_crossnode(json.loads(result_path.read_text()), result_path), name=KIND)
    return result_path


def render_crossnode(result: dict[str, Any], source: Path | None = None) -> str:
    meta, preset, entry = result["metadata"], result["preset"], result["section"]
    packed, spread = entry["packed"], entry["spread"]
    git, machine = meta["git"], meta["machine"]
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    cited = f"; result file: `{source.as_posix()}`" if source is not None else ""
    return "\n".join([
        "## Exchange across nodes (section S, cross-node)", "",
        f"- commit: `{git.get('commit') or 'unknown'}`{dirty}; measured {meta['date_utc']}; preset "
        f"`{preset['name']}`{cited}",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores; one `ray.cluster_utils.Cluster` on it: a "
        f"CPU-less head and {preset['num_clients']} worker raylets, each with its own object store",
        f"- {preset['num_clients']} clients on a ring, blocks of {_bytes(packed['block_bytes'][0])}; `PACK` put "
        f"them on {packed['nodes']} node(s), `STRICT_SPREAD` on {spread['nodes']}; median of {spread['samples']} "
        "steady steps per placement, runs alternating", "",
        "| placement | exchange phase | of it: slowest client's arithmetic | bytes per step | crossing nodes |",
        "|---|---|---|---|---|",
        _row("all on one node (`PACK`)", packed),
        _row("one per node (`STRICT_SPREAD`)", spread), "",
        f"**{entry['label']}: {_number(entry['ratio'])}** (same blocks, same bytes; the difference is Ray's object "
        "manager pulling each neighbour's block from another node's store, here over loopback TCP).",
    ]) + "\n"


def _row(label: str, side: dict[str, Any]) -> str:
    return (f"| {label} | {_seconds(side['exchange_s'])} | {_seconds(side['slowest_client_arithmetic_s'])} | "
            f"{_bytes(side['bytes_per_step'])} | {_bytes(side['cross_node_bytes_per_step'])} |")
