"""`python -m benchmarks system --cross-node`: the same blocks across nodes vs within one, as a ratio."""

from __future__ import annotations

import json

import pytest

from benchmarks.system.crossnode import QUICK, crossnode_section, run_crossnode_benchmark
from benchmarks.system.crossnode_report import render_newest_crossnode

BEGIN, END = "<!-- crossnode:begin -->", "<!-- crossnode:end -->"


def _run(strategy: str, exchange_s: float, crossing: float, nodes: int) -> dict:
    return {"strategy": strategy, "nodes": nodes, "samples": 4, "exchange_s": exchange_s,
            "slowest_client_arithmetic_s": 0.002, "transfer_and_scheduling_s": exchange_s - 0.002, "step_s": 0.1,
            "bytes_per_step": 600.0, "cross_node_bytes_per_step": crossing, "block_bytes": [100]}


def test_the_ratio_is_spread_over_packed_exchange_with_the_same_bytes():
    runs = {"PACK": [_run("PACK", 0.010, 0.0, 1), _run("PACK", 0.014, 0.0, 1)],
            "STRICT_SPREAD": [_run("STRICT_SPREAD", 0.030, 600.0, 3), _run("STRICT_SPREAD", 0.030, 600.0, 3)]}
    entry = crossnode_section(runs)
    assert entry["ratio"] == pytest.approx(0.030 / 0.012)  # medians over runs: 12 ms packed
    assert entry["spread"]["cross_node_bytes_per_step"] == 600.0 and entry["packed"]["cross_node_bytes_per_step"] == 0
    runs["PACK"][0]["bytes_per_step"] = runs["PACK"][1]["bytes_per_step"] = 300.0
    with pytest.raises(RuntimeError, match="same blocks"):
        crossnode_section(runs)


@pytest.mark.integration
@pytest.mark.multinode
def test_quick_cross_node_benchmark_writes_a_result_and_its_markdown_line(tmp_path):
    results, markdown = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    path = run_crossnode_benchmark(QUICK, results)
    assert render_newest_crossnode(results, markdown) == path
    entry = json.loads(path.read_text())["section"]
    packed, spread = entry["packed"], entry["spread"]
    assert packed["nodes"] == 1 and spread["nodes"] == QUICK.num_clients
    assert packed["cross_node_bytes_per_step"] == 0 and spread["cross_node_bytes_per_step"] == spread["bytes_per_step"]
    assert entry["ratio"] > 0
    text = markdown.read_text()
    assert BEGIN in text and END in text and f"{entry['label']}: " in text
