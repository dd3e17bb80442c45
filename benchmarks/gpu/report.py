"""Render the newest GPU result (``gpu-*.json`` from scripts/gpu_check.sh) into BENCHMARKS.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.markdown import update_markdown
from benchmarks.results import newest_result

GIB = 2**30


def render_newest_gpu(results_dir: Path, markdown: Path) -> Path:
    path = newest_result(results_dir, kind="gpu")
    update_markdown(markdown, render_gpu(json.loads(path.read_text()), path), name="gpu")
    return path


def render_gpu(result: dict[str, Any], source: Path) -> str:
    meta, setting = result["meta"], result["setting"]
    deca, full, ratios = result["deca_client"], result["full_adam_mixed_precision"], result["ratios"]
    bottom, top = deca["bottom_block"], deca["top_block"]
    lines = [
        "## On a GPU (section G)",
        "",
        f"- commit: `{meta['git']['commit']}`; measured {meta['date_utc']}; result file: `{source.as_posix()}`",
        f"- machine: {meta['machine']['gpu']}, {meta['machine']['cpu_cores']} CPU cores; python "
        f"{meta['versions']['python']}, torch {meta['versions']['torch']}, "
        f"transformers {meta['versions']['transformers']}, "
        f"ray {meta['versions']['ray']}",
        f"- model: {setting['model']}; {setting['dtype']}; batch {setting['batch_size']} × {setting['length']} tokens; "
        f"{deca['num_blocks']} blocks of 2 layers; median of {setting['steps'] - 1} timed steps",
        "",
        "| one client on one GPU | step (ms) | tokens/s | peak GPU memory (GiB) |",
        "|---|---|---|---|",
        _row("DECA, bottom block (backward through all layers)", bottom),
        _row("DECA, top block", top),
        _row("full Adam, mixed precision (bf16 weights, fp32 master + moments)", full),
        "",
        f"- peak GPU memory, DECA (bottom block) ÷ full Adam: **{ratios['peak_memory_deca_over_full_adam']:.3f}** "
        f"(the paper's tensor-only claim (M + 10M/B) / 9M would be {ratios['paper_claim_deca_over_full_adam']:.3f}; "
        "measured peaks include activations and logits, which both methods pay)",
        f"- DECA tensor memory (weights + active-block grads, fp32 master, fp32 moments) ÷ M (bf16 weights): "
        f"**{ratios['deca_tensor_memory_over_M']:.3f}** against the paper's 1 + 10/B = "
        f"{ratios['paper_claim_deca_over_M']:.3f}",
        f"- tokens/s, DECA bottom block ÷ full Adam: **{ratios['tokens_per_s_deca_bottom_over_full_adam']:.2f}**",
    ]
    shared = result.get("shared_gpu_4_clients")
    if shared:
        lines.append(
            f"- {shared['num_clients']} clients sharing the GPU in one process (top block, ring; clients compute "
            f"one after another): each computes at {shared['tokens_per_s_per_client']:.0f} tokens/s, one inner step "
            f"of all of them takes {shared['median_step_s'] * 1e3:.1f} ms, of which exchange + mix "
            f"{shared['median_exchange_s'] * 1e3:.2f} ms"
        )
    actors = result.get("ray_actors_sharing_gpu")
    if actors and "skipped" in actors:
        lines.append(f"- client actors sharing the GPU (fractional num_gpus): not measured — {actors['skipped']}")
    elif actors:
        lines.append(
            f"- {actors['num_clients']} client actors sharing the GPU ({actors['gpus_per_client']:.2f} GPU each): "
            f"{actors['tokens_per_s_per_client']:.0f} tokens/s per client, step {actors['median_step_s'] * 1e3:.1f} ms"
        )
    return "\n".join(lines) + "\n"


def _row(name: str, entry: dict[str, Any]) -> str:
    return (f"| {name} | {entry['median_step_s'] * 1e3:.1f} | {entry['tokens_per_s']:.0f} | "
            f"{entry['peak_allocated_bytes'] / GIB:.2f} |")
