"""The v1 quality report (one seed, one file per run): tables, deltas, winners and noise level follow from the
result files; plots are written. v1 suites stay renderable beside v2 ones."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from benchmarks.markdown import HEADER
from benchmarks.quality.report import render_newest_quality, render_quality

MIB = 2**20
TEST_SIZE = 100
CONFIG = {
    "num_clients": 8,
    "model": {"name": "smollm2-135m"},
    "data": {"batch_size": 2, "max_tokens": 80, "test_size": TEST_SIZE},
    "partition": {"type": "dirichlet", "alpha": 0.25},
    "topology": {"type": "erdos_renyi"},
    "algorithm": {"lr": 1e-4, "rounds": 1, "variant": "full", "h_sign": "old_minus_new", "h_scale": "lr",
                  "blocks": {"layers_per_block": 2, "order": "fixed", "fixed_order": [14, 13]}},
}
META = {"git": {"commit": "abc123", "dirty": True}, "date_utc": "2026-01-01T00:00:00+00:00",
        "machine": {"cpu_model": "Test CPU", "cpu_cores": 2, "gpu": None}, "versions": {}}
BEFORE = {"avg/accuracy": 0.2, "avg/macro_f1": 0.1, "avg/loss": 3.0}
LOSSES = [3.0, 2.8, 2.6, 2.4, 2.2, 2.0, 1.8]
CONSENSUS = [None, 1e-3, None, 3e-3, None, 5e-3, None]


def _after(accuracy: float, macro_f1: float, clients: tuple[float, float, float, float] | None = None) -> dict:
    after = {"avg/accuracy": accuracy, "avg/macro_f1": macro_f1, "avg/loss": 2.0}
    if clients is not None:
        after |= dict(zip(("clients_mean/accuracy", "clients_std/accuracy", "clients_mean/macro_f1",
                           "clients_std/macro_f1"), clients, strict=True))
    return after


def _result(run: str, table: str, label: str, after: dict, before: dict | None = None) -> dict[str, Any]:
    return {
        "metadata": META, "preset": "full", "run": run, "table": table, "label": label, "seed": 0,
        "config": copy.deepcopy(CONFIG),
        "metrics": {"before": before or {}, "after": after, "steps_per_client": 40,
                    "bytes_sent_per_client": 3.5 * MIB, "peak_tensor_bytes_per_client": 12.25 * MIB,
                    "wall_time_s": 61.5, "median_step_time_s": 0.25, "num_clients": 8},
        "topology": {"kind": "erdos_renyi", "spectral_gap": 0.375},
        "curves": {"step": list(range(len(LOSSES))), "mean_loss": LOSSES, "consensus_distance": CONSENSUS},
    }


RESULTS = [
    _result("deca", "methods", "DECA", _after(0.60, 0.50, (0.55, 0.05, 0.45, 0.04)), before=BEFORE),
    _result("dec_lora", "methods", "Dec-LoRA", _after(0.45, 0.35)),  # per-client evaluation did not run
    _result("ablation-h_new_minus_old", "ablations", "h new-old", _after(0.40, 0.30)),
    _result("ablation-h_raw", "ablations", "h raw", _after(0.75, 0.52)),
    _result("ablation-h_unit_norm", "ablations", "h unit", _after(0.62, 0.60)),
    _result("ablation-without_bma", "ablations", "no BMA", _after(0.60, 0.55)),  # ties DECA, better F1
    _result("ablation-ring", "ablations", "ring", _after(0.58, 0.49)),
]
SUITE = {"preset": "full", "runs": [result["run"] for result in RESULTS], "wall_time_s": 5400.0, "metadata": META}


def _write_suite(directory: Path, suite: dict, results: list[dict]) -> Path:
    directory.mkdir(parents=True)
    (directory / "suite.json").write_text(json.dumps(suite))
    for result in results:
        (directory / f"{result['run']}.json").write_text(json.dumps(result))
    return directory


def _cells(text: str, label: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, rows
    return [cell.strip() for cell in rows[0].strip("|").split("|")][1:]


def _finding(text: str, title: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"- {title} ("))


def test_newest_suite_is_plotted_and_replaces_the_quality_section_once(tmp_path):
    # Prepare: an older suite, the newest one, and a BENCHMARKS.md with a stale quality section between others
    results_dir = tmp_path / "results"
    _write_suite(results_dir / "quality-20250101T000000Z", SUITE | {"preset": "old"}, RESULTS)
    newest = _write_suite(results_dir / "quality-20260101T000000Z", SUITE, RESULTS)
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# B\n\nbefore\n\n<!-- quality:begin -->\nstale\n<!-- quality:end -->\n\nafter\n")
    # Execute
    used = render_newest_quality(results_dir, markdown)
    # Assert
    text = markdown.read_text()
    assert used == newest
    assert text.count("<!-- quality:begin -->") == 1 and text.count("<!-- quality:end -->") == 1
    # the header is the renderer's; the text after the sections is kept
    assert "stale" not in text and text.startswith(HEADER) and text.endswith("\n\nafter\n")
    assert "preset `full`" in text and "preset `old`" not in text
    for name in ("loss_curves.png", "accuracy.png", "ablation_loss_curves.png"):
        assert (newest / name).stat().st_size > 0
        assert f"]({(newest / name).as_posix()})" in text


def test_a_missing_section_is_appended(tmp_path):
    _write_suite(tmp_path / "quality-20260101T000000Z", SUITE, RESULTS)
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# B\n\n<!-- system:begin -->\nx\n<!-- system:end -->\n")
    render_newest_quality(tmp_path, markdown)
    text = markdown.read_text()
    assert text.index("<!-- system:end -->") < text.index("<!-- quality:begin -->") < text.index("<!-- quality:end -->")


def test_methods_table_converts_units_and_marks_missing_per_client_scores():
    text = render_quality(SUITE, RESULTS, Path("suite"))
    deca, lora, before = _cells(text, "DECA"), _cells(text, "Dec-LoRA"), _cells(text, "before training (shared start)")
    assert before[:3] == ["—", f"{BEFORE['avg/accuracy']:.3f}", f"{BEFORE['avg/macro_f1']:.3f}"]
    assert deca[0] == f"{CONFIG['algorithm']['lr']:g}"
    assert deca[1:5] == ["0.600", "0.500", "0.550 ± 0.050", "0.450 ± 0.040"]
    assert deca[5:] == [f"{3.5 * MIB / 2**20:.1f}", f"{12.25 * MIB / 2**20:.1f}", "61.5", "0.250"]
    assert lora[3:5] == ["—", "—"]
    assert f"{SUITE['wall_time_s'] / 60:.1f} min" in text and "1 seed (0)" in text
    assert "with one round every block is activated once" in text and "fixed blocks [14, 13]" in text
    assert f"{TEST_SIZE} held-out examples" in text and "(with uncommitted changes)" in text


def test_ablations_table_has_deltas_final_loss_and_consensus_over_measured_points():
    text = render_quality(SUITE, RESULTS, Path("suite"))
    reference = next(line for line in text.splitlines() if line.startswith("| DECA default ("))
    assert "erdos_renyi graph" in reference and "2 layers per block" in reference
    row = _cells(text, "h new-old")
    measured = [value for value in CONSENSUS if value is not None]
    assert row[2:4] == [f"{0.40 - 0.60:+.3f}", f"{0.30 - 0.50:+.3f}"]
    assert row[4] == f"{sum(LOSSES[-5:]) / 5:.3f}"
    assert row[5] == f"{sum(measured) / len(measured):.2e}"
    assert row[6] == "0.375"


def test_winners_come_from_the_numbers_and_absent_groups_are_skipped():
    text = render_quality(SUITE, RESULTS, Path("suite"))
    noise = math.sqrt(0.60 * 0.40 / TEST_SIZE)
    h_group = _finding(text, "h sign and scale")
    # h raw beats h unit norm (the runner-up on accuracy, though it has the higher F1) by 13 points, above 2 SE
    assert "**h raw**" in h_group and f"{100 * (0.75 - 0.62):.1f} accuracy points ahead of h unit" in h_group
    assert "within noise" not in h_group and 100 * (0.75 - 0.62) > 200 * noise
    bma = _finding(text, "BMA")  # same accuracy as DECA: macro-F1 decides
    assert "**no BMA**" in bma and "ahead on macro-F1" in bma and "2 of 3 ran" in bma
    topology = _finding(text, "topology")
    assert "**DECA default (erdos_renyi graph)**" in topology and "within noise" in topology
    assert "- layers per block" not in text
    assert f"standard error is {noise:.3f}" in text and f"2 SE = {200 * noise:.1f}" in text


def test_exact_tie_names_no_winner():
    results = [RESULTS[0], _result("ablation-ring", "ablations", "ring", copy.deepcopy(RESULTS[0]["metrics"]["after"]))]
    text = render_quality(SUITE | {"runs": ["deca", "ablation-ring"]}, results, Path("suite"))
    assert "no winner" in _finding(text, "topology")
