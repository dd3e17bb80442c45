"""Medians of the timed steps on both clocks, counted FLOPs against the matmul peak, and the headline numbers."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.step.flops import ModelShape, plan_for, step_flops, total_flops
from benchmarks.step.phases import PHASES, StepSample, StepTimes
from benchmarks.step.variants import head_positions

TOP_TARGET = 0.5
"""Issue 13: the top block's step FLOP/s ÷ matmul peak ≥ 0.5."""
CLOCKS = ("wall", "cpu")


def headline_clock(device: str, torch_threads: int) -> str:
    """The clock the target is judged on: CPU time where it is exact (one thread on a CPU), else wall time.

    On a shared CPU machine the wall clock also counts the time other processes held the cores;
    one thread's CPU time does not, and with one thread there are no spinning helpers to inflate it.
    """
    return "cpu" if device == "cpu" and torch_threads == 1 else "wall"


def summarise(runs: Sequence[StepSample], shape: ModelShape, trained: Sequence[int], variant: str,
              peak_flop_per_s: float) -> dict[str, Any]:
    """One variant's timed steps: counted FLOPs by phase, and per clock the medians and ratios to the peak."""
    plan = plan_for(trained, prefix_warm=variant == "prefix_warm", head_positions=head_positions(variant))
    flops = [step_flops(shape, run.batch, plan) for run in runs]
    tokens = [run.batch.tokens for run in runs]
    return {
        "steps": len(runs),
        "tokens": _median(tokens),
        "padded_tokens": _median([run.batch.padded_tokens for run in runs]),
        "labelled": _median([run.batch.labelled for run in runs]),
        "flops": {key: _median([f[key] for f in flops]) for key in flops[0]},
        "flops_total": _median([total_flops(f) for f in flops]),
        "loss": _median([run.loss for run in runs]),
        "cpu_share": _median([run.cpu.step_s / run.wall.step_s for run in runs]),
        "wall": timing([run.wall for run in runs], flops, tokens, peak_flop_per_s),
        "cpu": timing([run.cpu for run in runs], flops, tokens, peak_flop_per_s),
        "samples": [{"wall": run.wall.phases_s, "cpu": run.cpu.phases_s, "lengths": run.batch.lengths,
                     "labelled": run.batch.labelled} for run in runs],
    }


def timing(times: Sequence[StepTimes], flops: Sequence[dict[str, int]], tokens: Sequence[int],
           peak_flop_per_s: float) -> dict[str, Any]:
    """Medians on one clock: phases, half-step, FLOP/s ÷ peak (median and fastest step, and by phase), tokens/s."""
    phases = {phase: _median([t.phases_s[phase] for t in times]) for phase in PHASES}
    rates = [total_flops(f) / t.half_step_s for f, t in zip(flops, times, strict=True)]
    counted = _by_phase({key: _median([f[key] for f in flops]) for key in flops[0]})
    return {
        "phases_s": phases,
        "half_step_s": _median([t.half_step_s for t in times]),
        "step_s": _median([t.step_s for t in times]),
        "flop_per_s": _median(rates),
        "ratio_to_peak": _median(rates) / peak_flop_per_s,
        "fastest_ratio_to_peak": max(rates) / peak_flop_per_s,
        "phase_ratio_to_peak": {phase: value / phases[phase] / peak_flop_per_s
                                for phase, value in counted.items() if value > 0 and phases[phase] > 0},
        # each half-step phase's seconds beyond its counted FLOPs at the peak: where the gap to 1 goes
        "time_beyond_peak_s": {phase: phases[phase] - counted.get(phase, 0) / peak_flop_per_s
                               for phase in PHASES if phase != "mix"},
        "tokens_per_s": _median([n / t.step_s for n, t in zip(tokens, times, strict=True)]),
    }


def summary(blocks: dict[str, Any], clock: str) -> dict[str, Any]:
    """The headline: each block's ratio to peak on ``clock`` (the top block's against its target), both
    clocks' ratios, and the forwards' half-step times over one another, side by side on the same batches."""
    top, bottom = blocks["top"]["variants"], blocks["bottom"]["variants"]
    ratios = {name: {"top": top["prefix_warm"][name]["ratio_to_peak"],
                     "bottom": bottom["answer_only"][name]["ratio_to_peak"]} for name in CLOCKS}
    return {
        "clock": clock,
        "top_ratio_to_peak": ratios[clock]["top"], "bottom_ratio_to_peak": ratios[clock]["bottom"],
        "top_target": TOP_TARGET, "top_met": ratios[clock]["top"] >= TOP_TARGET,
        "ratios_to_peak": ratios,
        "half_step_ratios": {name: time_ratios(top, bottom, name) for name in CLOCKS},
        "peak_rss_bytes": max(block["peak_rss_bytes"] for block in blocks.values()),
    }


def time_ratios(top: dict[str, Any], bottom: dict[str, Any], clock: str) -> dict[str, float]:
    """The forwards' median half-step times on ``clock`` over one another."""
    def half_step(variants: dict[str, Any], name: str) -> float:
        return variants[name][clock]["half_step_s"]

    return {"full_logits_over_answer_only": half_step(top, "full_logits") / half_step(top, "answer_only"),
            "answer_only_over_prefix_warm": half_step(top, "answer_only") / half_step(top, "prefix_warm"),
            "full_logits_over_prefix_warm": half_step(top, "full_logits") / half_step(top, "prefix_warm"),
            "prefix_cold_over_answer_only": half_step(top, "prefix_cold") / half_step(top, "answer_only"),
            "bottom_over_top_prefix_warm": half_step(bottom, "answer_only") / half_step(top, "prefix_warm")}


def _by_phase(flops: dict[str, float]) -> dict[str, float]:
    """Counted FLOPs by timed phase (backward holds both gradient kinds)."""
    return {"forward_below": flops["forward_below"], "forward_layers": flops["forward_layers"],
            "forward_head": flops["forward_head"],
            "backward": flops["backward_activations"] + flops["backward_weights"]}


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
