"""The step profile: its summary and BENCHMARKS.md section from hand-made timings, and ``--quick`` end to end."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from benchmarks.results import newest_result
from benchmarks.step.flops import BatchShape, ModelShape
from benchmarks.step.peak import HEAD_SHAPE
from benchmarks.step.phases import PHASES, StepSample, StepTimes
from benchmarks.step.presets import QUICK
from benchmarks.step.report import render_step
from benchmarks.step.run import block_result, step_payload
from benchmarks.step.summary import headline_clock, summary
from benchmarks.step.variants import BOTTOM_VARIANTS, TOP_VARIANTS

SHAPE = ModelShape(num_layers=2, hidden_size=4, intermediate_size=8, num_heads=2, num_kv_heads=1, vocab_size=10)
BATCH = BatchShape(lengths=(3,), labelled=1, padded_width=3)
PEAK = 6.08e9  # FLOP/s: the warm-prefix step's 3040 counted FLOPs in 1 µs are half of it


def _times(half_step_s: float) -> StepTimes:
    """Phases adding up to ``half_step_s`` (forward 40%, backward 40%, optimizer, batch 10% each); mix half as long."""
    shares = dict(zip(PHASES, (0.1, 0.2, 0.1, 0.4, 0.1, 0.1, 0.5), strict=True))
    return StepTimes({phase: share * half_step_s for phase, share in shares.items()}, half_step_s)


def _sample(half_step_s: float) -> StepSample:
    """Wall time twice the CPU time: the process had its core half of the time."""
    return StepSample(wall=_times(2 * half_step_s), cpu=_times(half_step_s), batch=BATCH, loss=1.0)


def _block(variants: tuple[str, ...], trained: list[int], half_step_s: dict[str, float]) -> dict:
    matmul = {"dtype": "float32", "repeats": 1, "peak_flop_per_s": PEAK,
              "per_shape": {"gate, up: tokens×d @ d×f": {"m": 3, "k": 4, "n": 8, "flop_per_s": PEAK},
                            HEAD_SHAPE: {"m": 1, "k": 4, "n": 10, "flop_per_s": PEAK / 4}}}
    facts = {"block_index": trained[0], "block_numel": 100, "shard_examples": 8, "prefix_fill_s_per_example": 2e-3}
    return block_result({name: [_sample(half_step_s[name])] * 3 for name in variants}, SHAPE, trained, matmul, facts)


@pytest.fixture(scope="module")
def hand_made_result() -> dict:
    top = _block(TOP_VARIANTS, [1], {"full_logits": 4e-6, "answer_only": 2e-6, "prefix_cold": 3e-6,
                                     "prefix_warm": 1e-6})
    bottom = _block(BOTTOM_VARIANTS, [0], {"answer_only": 5e-6})
    payload = step_payload(QUICK, {"top": top, "bottom": bottom})
    payload["summary"] = summary(payload["blocks"], clock="cpu")  # as a one-thread CPU run is judged
    return json.loads(json.dumps(payload, default=lambda value: value.as_dict()))  # as the result file holds it


def test_a_one_thread_cpu_run_is_judged_on_cpu_time_and_everything_else_on_wall_time():
    assert headline_clock("cpu", 1) == "cpu"
    assert headline_clock("cpu", 2) == headline_clock("cuda", 1) == "wall"


def test_summary_reads_flops_per_second_against_the_peak_and_the_forwards_side_by_side(hand_made_result):
    # Execute
    result = hand_made_result["summary"]
    warm = hand_made_result["blocks"]["top"]["variants"]["prefix_warm"]
    # Assert: 3040 FLOPs in 1 µs of CPU time is 3.04e9 FLOP/s, half the peak: the target is met exactly;
    # on wall time (2 µs) it is a quarter
    assert warm["flops_total"] == 3040 and warm["cpu"]["flop_per_s"] == pytest.approx(3.04e9)
    assert result["top_ratio_to_peak"] == pytest.approx(0.5) and result["top_met"]
    assert result["ratios_to_peak"]["wall"]["top"] == pytest.approx(0.25) and warm["cpu_share"] == 0.5
    assert result["half_step_ratios"]["cpu"]["full_logits_over_answer_only"] == pytest.approx(2)
    assert result["half_step_ratios"]["cpu"]["answer_only_over_prefix_warm"] == pytest.approx(2)
    # ... and each half-step phase's time beyond its FLOPs at the peak adds up to the step's
    beyond = sum(warm["cpu"]["time_beyond_peak_s"].values())
    assert beyond == pytest.approx(warm["cpu"]["half_step_s"] - 3040 / PEAK)


def test_the_section_shows_every_row_the_headline_ratio_and_where_the_rest_goes(hand_made_result):
    # Execute
    text = render_step(hand_made_result)
    # Assert
    assert text.startswith("## Step profile") and "times and ratios on CPU time" in text
    row = "| top block (layer 1), answer-only head, frozen prefix warm | 3.04e-06 | 3.04 | **0.500** | 0.250 | 0.500 |"
    assert row in text and "| ≥ 0.5 | yes |" in text
    assert "| bottom block (layer 0), answer-only head, no prefix |" in text
    assert "full logits ÷ answer-only **2.00** (2.00)" in text and "What keeps the bottom block" in text
    assert "the head's product alone runs at 0.25 of the peak" in text
    assert hand_made_result["metadata"]["machine"]["cpu_model"] in text


def test_quick_step_profile_writes_a_result_with_provenance_and_renders_its_section(tmp_path):
    # Execute: tiny LLaMA on synthetic sequences (seconds)
    markdown = tmp_path / "BENCHMARKS.md"
    assert main(["step", "--quick", "--results-dir", str(tmp_path), "--markdown", str(markdown)]) == 0
    # Assert: commit, machine and every variant of both blocks, with counted FLOPs that follow the plan
    result = json.loads(newest_result(tmp_path, kind="step").read_text())
    assert result["metadata"]["git"]["commit"] and result["metadata"]["machine"]["cpu_cores"] >= 1
    top, bottom = result["blocks"]["top"]["variants"], result["blocks"]["bottom"]["variants"]
    assert list(top) == list(TOP_VARIANTS) and list(bottom) == list(BOTTOM_VARIANTS)
    assert top["prefix_warm"]["flops"]["forward_below"] == 0 < top["answer_only"]["flops"]["forward_below"]
    assert top["full_logits"]["flops"]["forward_head"] > top["answer_only"]["flops"]["forward_head"]
    assert result["torch_threads"] == 1 and result["summary"]["peak_rss_bytes"] > 0
    text = markdown.read_text()
    assert "<!-- step:begin -->" in text and result["metadata"]["git"]["commit"] in text
