"""Render the newest step result into BENCHMARKS.md between ``<!-- step:begin -->`` / ``<!-- step:end -->``.

Every number is read from the result file (``python -m benchmarks step``); only units are formatted.
Times and ratios are shown on the result's headline clock (``summary.clock``): CPU time ÷ threads
for a one-thread CPU run, wall time otherwise; the other clock's ratio stands beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.markdown import update_markdown
from benchmarks.results import newest_result
from benchmarks.step.peak import HEAD_SHAPE
from benchmarks.step.variants import LABELS

PHASE_COLUMNS = {
    "forward_below": "below L",
    "forward_layers": "layers L…top",
    "forward_head": "norm + head + loss",
    "backward": "backward",
    "optimizer": "optimizer",
    "batch_and_bookkeeping": "batch + metrics",
}
RATIO_LABELS = {
    "full_logits_over_answer_only": "full logits ÷ answer-only",
    "answer_only_over_prefix_warm": "answer-only ÷ prefix warm",
    "full_logits_over_prefix_warm": "full logits ÷ prefix warm",
    "prefix_cold_over_answer_only": "prefix cold ÷ answer-only",
    "bottom_over_top_prefix_warm": "bottom block ÷ top block (prefix warm)",
}
CLOCK_NAMES = {"wall": "wall time", "cpu": "CPU time"}


def render_newest_step(results_dir: Path, markdown: Path) -> Path:
    """Write the newest ``step-*.json`` of ``results_dir`` into ``markdown``; returns the result used."""
    path = newest_result(results_dir, kind="step")
    update_markdown(markdown, render_step(json.loads(path.read_text()), path), name="step")
    return path


def render_step(result: dict[str, Any], source: Path | None = None) -> str:
    summary = result["summary"]
    clock = summary["clock"]
    rows = _rows(result["blocks"])
    lines = ["## Step profile (section S, step)", "", *_provenance(result, source), "",
             *_phase_table(rows, clock), "", *_flops_table(rows, summary), "",
             *_details(result), *_gaps(result["blocks"], clock), *_counted()]
    return "\n".join(lines) + "\n"


def _rows(blocks: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for position in ("top", "bottom"):
        block = blocks[position]
        layers = block["trained_layers"]
        span = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}–{layers[-1]}"
        for variant, entry in block["variants"].items():
            rows.append((f"{position} block ({span}), {LABELS[variant]}", entry))
    return rows


def _provenance(result: dict[str, Any], source: Path | None) -> list[str]:
    meta, preset = result["metadata"], result["preset"]
    git, machine, versions = meta["git"], meta["machine"], meta["versions"]
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    ram = f"{machine['ram_bytes'] / 2**30:.1f} GiB RAM" if machine.get("ram_bytes") else "RAM unknown"
    top = result["blocks"]["top"]
    shape = top["model_shape"]
    sample = top["variants"]["answer_only"]
    lines = [
        f"- commit: `{git.get('commit') or 'unknown'}`{dirty}; measured {meta['date_utc']}; preset `{preset['name']}`",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, {ram}, {machine.get('gpu') or 'no GPU'}; "
        f"python {versions['python']}, torch {versions['torch']}, transformers {versions['transformers']}",
        f"- {result['device']}, {preset['dtype']} weights, {result['torch_threads']} torch thread(s); one in-process "
        "client (no Ray)",
        *_contention(result),
        f"- model: {preset['model']['name']} ({shape['num_layers']} layers, hidden {shape['hidden_size']}, "
        f"intermediate {shape['intermediate_size']}, {shape['num_heads']}/{shape['num_kv_heads']} heads, "
        f"vocabulary {shape['vocab_size']})",
        f"- data: {_data(preset)} ({top['shard_examples']} examples), batch {preset['batch_size']}: median "
        f"{sample['tokens']:.0f} real tokens ({sample['padded_tokens']:.0f} padded), {sample['labelled']:.0f} "
        f"labelled; median of {sample['steps']} steps per row, every row of a block on the same batches, "
        "interleaved round by round",
        "- regenerate: `python -m benchmarks step` (`--random-weights` on a GPU machine)",
    ]
    if source is not None:
        lines.append(f"- result file: `{source.as_posix()}`")
    return lines


def _data(preset: dict[str, Any]) -> str:
    if preset["data"] == "quickstart":
        return "client 0's shard of deployments/local/quickstart.yaml"
    sizes = preset["synthetic"]
    return (f"random sequences of {sizes['min_length']}–{sizes['max_length']} tokens, the last "
            f"{sizes['answer_tokens']} labelled")


def _contention(result: dict[str, Any]) -> list[str]:
    """How much of the machine the run had, and which clock the numbers below are on."""
    clock = result["summary"]["clock"]
    lines = [f"- times and ratios on {CLOCK_NAMES[clock]}"
             + (" (the process's CPU time: on a shared machine it leaves out the time spent waiting for a core)"
                if clock == "cpu" else "")]
    load = result.get("load_average")
    if load is not None:
        shares = [entry["cpu_share"] for block in result["blocks"].values() for entry in block["variants"].values()]
        lines.append(f"- load average (1 min) {load['before'][0]:.1f} before, {load['after'][0]:.1f} after, on "
                     f"{result['metadata']['machine']['cpu_cores']} cores; CPU time ÷ threads ÷ wall time of the "
                     f"steps: {min(shares):.2f}–{max(shares):.2f}")
    return lines


def _phase_table(rows: list[tuple[str, dict[str, Any]]], clock: str) -> list[str]:
    header = ["step", *PHASE_COLUMNS.values(), "half-step", "exchange + mix (2 neighbours)", "tokens/s"]
    lines = [f"Time per step (ms, {CLOCK_NAMES[clock]}; L is the lowest trained layer):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in rows:
        timing = entry[clock]
        phases = timing["phases_s"]
        cells = [_ms(phases[phase]) for phase in PHASE_COLUMNS]
        lines.append(f"| {label} | {' | '.join(cells)} | {_ms(timing['half_step_s'])} | {_ms(phases['mix'])} "
                     f"| {timing['tokens_per_s']:.0f} |")
    return lines


def _flops_table(rows: list[tuple[str, dict[str, Any]]], summary: dict[str, Any]) -> list[str]:
    clock = summary["clock"]
    other = "wall" if clock == "cpu" else "cpu"
    header = ["step", "counted GFLOP", "GFLOP/s", "÷ matmul peak", f"on {CLOCK_NAMES[other]}", "fastest step",
              "below L", "layers L…top", "head", "backward", "target", "met?"]
    lines = [f"Counted FLOPs ÷ half-step time against the matmul peak: the median step on {CLOCK_NAMES[clock]}, "
             f"on {CLOCK_NAMES[other]}, the fastest step; by phase, that phase's FLOPs ÷ its median time:", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in rows:
        timing = entry[clock]
        phase = timing["phase_ratio_to_peak"]
        cells = [_fraction(phase.get(name)) for name in ("forward_below", "forward_layers", "forward_head", "backward")]
        target, met = "—", "—"
        if label.startswith("top") and label.endswith(LABELS["prefix_warm"]):
            target, met = f"≥ {summary['top_target']}", "yes" if summary["top_met"] else "**no**"
        lines.append(f"| {label} | {entry['flops_total'] / 1e9:.3g} | {timing['flop_per_s'] / 1e9:.3g} "
                     f"| **{timing['ratio_to_peak']:.3f}** | {entry[other]['ratio_to_peak']:.3f} "
                     f"| {timing['fastest_ratio_to_peak']:.3f} | {' | '.join(cells)} | {target} | {met} |")
    return lines


def _details(result: dict[str, Any]) -> list[str]:
    blocks, summary = result["blocks"], result["summary"]
    clock = summary["clock"]
    other = "wall" if clock == "cpu" else "cpu"
    matmul = blocks["top"]["matmul"]
    rates = "; ".join(f"{name} {entry['flop_per_s'] / 1e9:.3g}" for name, entry in matmul["per_shape"].items())
    ratios, others = summary["half_step_ratios"][clock], summary["half_step_ratios"][other]
    side_by_side = "; ".join(f"{RATIO_LABELS[name]} **{value:.2f}** ({others[name]:.2f})"
                             for name, value in ratios.items())
    fill = blocks["top"]["prefix_fill_s_per_example"]
    rss = blocks["top"]["peak_rss_bytes"], summary["peak_rss_bytes"]
    gpu = blocks["top"].get("peak_gpu_allocated_bytes")
    lines = [
        f"- Matmul peak at the top block's shapes ({matmul['dtype']}, same threads, best of {matmul['repeats']}, "
        f"before and after the steps), GFLOP/s: {rates}; peak **{matmul['peak_flop_per_s'] / 1e9:.3g}** "
        f"(bottom block's run: {blocks['bottom']['matmul']['peak_flop_per_s'] / 1e9:.3g}).",
        f"- Half-step time side by side (same batches; {CLOCK_NAMES[clock]}, in brackets {CLOCK_NAMES[other]}): "
        f"{side_by_side}.",
        "" if fill is None else f"- Frozen prefix fill (before the timed rounds, wall time): {_ms(fill)} ms per "
                                "example, alone.",
        f"- Peak RSS: {_gib(rss[0])} after the top block's rows (one client), {_gib(rss[1])} for the whole run "
        "(the bottom block's client is built after the top one's is released).",
        "" if gpu is None else f"- Peak GPU memory allocated: {_gib(gpu)} (top block), "
                               f"{_gib(blocks['bottom']['peak_gpu_allocated_bytes'])} (bottom block).",
    ]
    return [line for line in lines if line]


def _gaps(blocks: dict[str, Any], clock: str) -> list[str]:
    """Where each headline step spends the time beyond its counted FLOPs at the matmul peak."""
    lines = []
    for position, variant in (("top", "prefix_warm"), ("bottom", "answer_only")):
        block = blocks[position]
        entry = block["variants"][variant]
        timing = entry[clock]
        beyond = timing["time_beyond_peak_s"]
        total = sum(beyond.values())
        shares = sorted(beyond.items(), key=lambda item: -item[1])
        parts = ", ".join(f"{PHASE_COLUMNS[phase]} {_ms(seconds)} ms ({seconds / total:.0%})"
                          for phase, seconds in shares if seconds / total >= 0.02)
        matmul = block["matmul"]
        head = matmul["per_shape"][HEAD_SHAPE]["flop_per_s"] / matmul["peak_flop_per_s"]
        padding = entry["padded_tokens"] / entry["tokens"] - 1
        half_step = timing["half_step_s"]
        lines.append(f"- What keeps the {position} block ({LABELS[variant]}) from 1: its {_ms(half_step)} ms "
                     f"half-step would take {_ms(half_step - total)} ms at the peak; the other {_ms(total)} ms: "
                     f"{parts}. The optimizer and batch phases hold no counted FLOPs; the head's product alone "
                     f"runs at {head:.2f} of the peak (it reads the whole d × V weight for {entry['labelled']:.0f} "
                     f"rows); padding adds {padding:.0%} to the tokens the kernels compute.")
    return lines


def _counted() -> list[str]:
    return ["- Counted (`benchmarks/step/flops.py`): per layer the q/k/v/o and gate/up/down products and the "
            "causal attention scores and weighted sum over real tokens, the head over the positions it is "
            "applied to; backward: activation gradients (once the forward for projections and head, twice for "
            "attention) from layer L up, weight gradients for the trained layers only. Norms, rotary, softmax, "
            "SiLU, cross-entropy and the optimizer are not counted."]


def _ms(seconds: float) -> str:
    milliseconds = seconds * 1e3
    return f"{milliseconds:.0f}" if abs(milliseconds) >= 100 else f"{milliseconds:.3g}"


def _fraction(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB"
