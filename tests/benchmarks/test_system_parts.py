"""The system benchmark's pure parts: traffic arithmetic, memory model, growth fit, result files, rendering."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from benchmarks.markdown import HEADER, update_markdown
from benchmarks.results import NoResultError, newest_result, write_result
from benchmarks.system.memory import analytic_section
from benchmarks.system.presets import QUICK
from benchmarks.system.report import render_newest_system
from benchmarks.system.scale import growth_exponent
from benchmarks.system.traffic import traffic_section
from deca_ray.schedule import Position, StepMetrics

BEGIN, END = "<!-- system:begin -->", "<!-- system:end -->"


def _round(block_bytes: list[int], inner_steps: int, degree: int, clients: int = 3) -> list[StepMetrics]:
    steps, global_step = [], 0
    for block, size in enumerate(block_bytes):
        for inner in range(inner_steps):
            steps.append(StepMetrics(Position(0, block, inner, global_step), list(range(clients)), [1.0] * clients,
                                     [size * degree] * clients, step_time_s=0.1))
            global_step += 1
    return steps


def test_traffic_is_exactly_the_block_share_for_equal_blocks():
    # Prepare: 4 equal blocks of 100 B, 2 steps each, ring (out-degree 2)
    history = _round([100] * 4, inner_steps=2, degree=2)
    # Execute
    entry = traffic_section(history, [100] * 4, {0: 2, 1: 2, 2: 2}, model_bytes=1000)
    # Assert: 800·2 B sent vs 400·2·8 B for full gossip = 1/4 = 1/B
    assert entry["deca_bytes_per_client"]["0"] == 1600 and entry["full_gossip_bytes_per_client"]["0"] == 6400
    assert entry["expected_fraction"] == "1/4" and entry["ratio"] == 0.25 and entry["met"] is True
    assert entry["ratio_against_whole_model"] == pytest.approx(0.1)


def test_traffic_flags_a_client_that_sends_more_than_its_share():
    history = _round([100, 300], inner_steps=1, degree=1, clients=2)
    history[0].bytes_sent[1] += 4  # one extra send
    entry = traffic_section(history, [100, 300], {0: 1, 1: 1}, model_bytes=400)
    assert entry["expected_fraction"] == "1/2" and entry["met"] is False and entry["exact_for_every_client"] is False


def test_memory_model_matches_the_closed_form():
    # Prepare: M = 1000 parameters, 4 blocks of 200 (the rest frozen embeddings)
    entry = analytic_section(1000, [200] * 4)
    # Assert: (M + 3·200) / 4M = 0.4 against (1 + 3/4) / 4 = 0.4375
    assert entry["ratio"] == pytest.approx(0.4) and entry["target"] == pytest.approx(0.4375) and entry["met"]
    assert entry["deca_tensor_bytes"] == 1600 * 4 and entry["full_adam_tensor_bytes"] == 4000 * 4


def test_a_preset_whose_sections_would_miss_their_sweep_point_is_rejected():
    with pytest.raises(ValueError, match="overhead_clients=3 must be one of sweep_clients"):
        replace(QUICK, overhead_clients=3)
    with pytest.raises(ValueError, match="inner_steps"):
        replace(QUICK, inner_steps=1)


def test_growth_exponent_is_one_for_linear_and_zero_for_flat():
    assert growth_exponent([2, 4, 8], [0.2, 0.4, 0.8]) == pytest.approx(1.0)
    assert growth_exponent([2, 4, 8], [0.3, 0.3, 0.3]) == pytest.approx(0.0)


def test_result_files_are_named_by_time_and_the_newest_is_rendered(tmp_path):
    first = write_result(_result(0.9), tmp_path, now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    second = write_result(_result(1.5), tmp_path, now=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert first.name == "system-20260101T000000Z.json" and newest_result(tmp_path) == second
    markdown = tmp_path / "BENCHMARKS.md"
    assert render_newest_system(tmp_path, markdown) == second
    text = markdown.read_text()
    assert "| runtime | 1.5 | ≤ 1.2 | **no** |" in text and "`abc123`" in text and "Test CPU" in text


def test_rendering_without_a_result_says_which_command_to_run(tmp_path):
    with pytest.raises(NoResultError, match="run `python -m benchmarks system` first"):
        render_newest_system(tmp_path, tmp_path / "BENCHMARKS.md")
    assert not (tmp_path / "BENCHMARKS.md").exists()


def test_markdown_keeps_the_text_after_the_header_and_renews_the_header(tmp_path):
    # Prepare: a header naming an old command, a section, and text after it
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text(f"# Benchmarks\n\nRegenerate with `old-command`.\n\n{BEGIN}\nold\n{END}\n\noutro\n")
    # Execute
    update_markdown(markdown, "new", name="system")
    # Assert: the header is the renderer's, the section is replaced, the rest is kept
    assert markdown.read_text() == f"{HEADER}\n{BEGIN}\nnew\n{END}\n\noutro\n"


def _result(ratio: float) -> dict:
    return json.loads(json.dumps({
        "preset": {"name": "quick"},
        "metadata": {"git": {"commit": "abc123", "dirty": False}, "date_utc": "2026-01-01T00:00:00+00:00",
                     "machine": {"cpu_model": "Test CPU", "cpu_cores": 2, "ram_bytes": 2**30, "gpu": None},
                     "versions": {"python": "3.11", "torch": "2", "ray": "2"}},
        "sections": {"driver_bytes": {"label": "runtime", "ratio": ratio, "target": 1.2, "rule": "<=",
                                      "met": ratio <= 1.2}},
    }))
