"""`python -m benchmarks system --quick` end to end: a result file with every section, rendered into BENCHMARKS.md."""

from __future__ import annotations

import json

import pytest

from benchmarks.system.presets import QUICK
from benchmarks.system.report import render_newest_system
from benchmarks.system.run import SECTIONS, run_system_benchmark

BEGIN, END = "<!-- system:begin -->", "<!-- system:end -->"

pytestmark = pytest.mark.integration


def test_quick_system_benchmark_writes_every_section_and_renders_it(ray_cluster, tmp_path):
    # Prepare: an empty results directory and no BENCHMARKS.md yet
    results, markdown = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    # Execute
    path = run_system_benchmark(QUICK, results)
    used = render_newest_system(results, markdown)
    # Assert: one JSON with provenance and every section's ratio, target and verdict
    assert used == path and path.name.startswith("system-")
    result = json.loads(path.read_text())
    meta = result["metadata"]
    assert meta["git"]["commit"] and isinstance(meta["git"]["dirty"], bool)
    assert meta["machine"]["cpu_model"] and meta["machine"]["cpu_cores"] >= 1 and meta["machine"]["ram_bytes"] > 0
    assert set(meta["versions"]) >= {"python", "torch", "ray"}
    assert list(result["sections"]) == list(SECTIONS)
    for entry in result["sections"].values():
        assert entry["ratio"] > 0 and entry["target"] is not None and entry["met"] in (True, False)
    assert result["sections"]["traffic"]["met"], "DECA sends exactly the active block's share"
    assert result["sections"]["driver_bytes"]["met"], "the driver's bytes do not follow the block size"
    # ... and BENCHMARKS.md shows each ratio line between the markers, with machine and commit
    text = markdown.read_text()
    assert BEGIN in text and END in text
    for entry in result["sections"].values():
        assert f"| {entry['label']} |" in text
    assert meta["git"]["commit"] in text and meta["machine"]["cpu_model"] in text
