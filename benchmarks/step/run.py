"""Step profile of one client (BENCHMARK.md section S, "Step"): phases, FLOP/s ÷ matmul peak, tokens/s, peak RSS.

One in-process ``ClientWorker`` (no Ray) on client 0's shard of the quickstart, one block
activated: the top block (every training forward side by side, same batches, interleaved round
by round) and then the bottom block (backward through every layer; no frozen prefix can apply).
Counted FLOPs (``flops.py``) ÷ the half-step's time is compared with ``torch.matmul`` at the
step's own shapes, dtype and thread count, measured before and after the steps in the same process.
Every step is timed on the wall clock and on the process's CPU time; a one-thread CPU run is
judged on the latter, which a shared machine's other processes do not inflate (``summary.py``).

    python -m benchmarks step [--quick | --random-weights] [--torch-threads N]
"""

from __future__ import annotations

import gc
import logging
import os
import random
import resource
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from benchmarks.results import REPOSITORY, metadata, write_result
from benchmarks.step.flops import BatchShape, ModelShape
from benchmarks.step.peak import best_of, matmul_peak, step_matmul_shapes
from benchmarks.step.phases import PhaseClock, StepSample, StepTimer
from benchmarks.step.presets import StepPreset
from benchmarks.step.summary import headline_clock, summarise, summary
from benchmarks.step.variants import BOTTOM_VARIANTS, TOP_VARIANTS, variant_forwards
from deca_ray.algorithm.blocks import layers_of
from deca_ray.client import ClientSpec, ClientWorker
from deca_ray.config import ExperimentConfig, config_from_dict, merge_overrides
from deca_ray.data.batching import collate
from deca_ray.data.types import EncodedExample
from deca_ray.experiment import prepare_inputs

logger = logging.getLogger(__name__)

QUICKSTART = REPOSITORY / "deployments" / "local" / "quickstart.yaml"


def run_step_benchmark(preset: StepPreset, results_dir: Path) -> Path:
    """Profile the top and the bottom block; write ``<results_dir>/step-<time>.json`` and return its path."""
    if preset.torch_threads is not None:
        torch.set_num_threads(preset.torch_threads)
    preset = replace(preset, dtype=resolved_dtype(preset))
    load_before = os.getloadavg()
    blocks = {"top": measure_block(preset, preset.top_block, TOP_VARIANTS),
              "bottom": measure_block(preset, 0, BOTTOM_VARIANTS)}
    load = {"before": load_before, "after": os.getloadavg()}
    return write_result(step_payload(preset, blocks, load), results_dir, kind="step")


def step_payload(preset: StepPreset, blocks: dict[str, Any], load_average: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The result file's content: provenance, the preset, both blocks' measurements and the headline numbers.

    ``load_average``: the machine's 1/5/15-minute load before and after (a shared machine's other work)."""
    device, threads = _device().type, torch.get_num_threads()
    return {"kind": "step", "metadata": metadata(), "preset": preset, "torch_threads": threads, "device": device,
            "load_average": load_average, "blocks": blocks, "summary": summary(blocks, headline_clock(device, threads))}


def resolved_dtype(preset: StepPreset) -> Literal["float32", "bfloat16"]:
    if preset.dtype != "auto":
        return preset.dtype
    return "bfloat16" if torch.cuda.is_available() else "float32"


def measure_block(preset: StepPreset, block_index: int, variants: Sequence[str]) -> dict[str, Any]:
    """Every variant's steps on block ``block_index`` of one fresh client, plus the matmul peak at their shapes."""
    client = build_client(block_config(preset, block_index), preset)
    if client.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(client.device)
    client.begin_block(block_index)
    assert client.block is not None
    trained = layers_of(client.block.names)
    lowest = min(trained)
    forwards = variant_forwards(client, variants, lowest)
    states = batch_states(client, preset.warmup_rounds + preset.repeats)
    shape = ModelShape.of(client.model)
    batches = [batch_of(client, state) for state in states]
    matmul_shapes = step_matmul_shapes(shape, int(_median([b.padded_tokens for b in batches])),
                                       int(_median([b.labelled for b in batches])))
    dtype = next(client.model.parameters()).dtype
    peak_before = matmul_peak(matmul_shapes, dtype, client.device, preset.matmul_repeats)
    prefix_fill_s = warm_prefix(client, states) if "prefix_warm" in forwards else None
    samples = interleaved_steps(client, forwards, states, lowest, preset.warmup_rounds)
    peak = best_of(peak_before, matmul_peak(matmul_shapes, dtype, client.device, preset.matmul_repeats))
    facts = {"block_index": block_index, "block_numel": client.block.numel, "shard_examples": len(client.shard),
             "prefix_fill_s_per_example": prefix_fill_s,
             "peak_gpu_allocated_bytes": torch.cuda.max_memory_allocated(client.device)
             if client.device.type == "cuda" else None}
    result = block_result(samples, shape, trained, peak, facts)
    del client, forwards
    gc.collect()  # the next block's client loads its own copy of the model
    return result


def block_result(samples: dict[str, list[StepSample]], shape: ModelShape, trained: Sequence[int],
                 matmul: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """One block's entry of the result file: every variant summarised against the matmul peak."""
    return {**facts, "trained_layers": list(trained), "model_shape": shape.as_dict(), "matmul": matmul,
            "variants": {name: summarise(runs, shape, trained, name, matmul["peak_flop_per_s"])
                         for name, runs in samples.items()},
            "peak_rss_bytes": peak_rss_bytes()}


def block_config(preset: StepPreset, block_index: int) -> ExperimentConfig:
    """The quickstart with only ``block_index`` covered; the prefix required on a top block."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    merge_overrides(raw, {
        "model": {**preset.model, "dtype": preset.dtype},
        "data": {"batch_size": preset.batch_size},
        "algorithm": {"blocks": {"layers_per_block": preset.layers_per_block, "fixed_order": [block_index]}},
        "runtime": {"frozen_prefix": "on" if block_index > 0 else "auto"},
    })
    return config_from_dict(raw)


def build_client(config: ExperimentConfig, preset: StepPreset) -> ClientWorker:
    """Client 0 of the quickstart, on its own shard (or on synthetic sequences)."""
    if preset.data == "synthetic":
        vocab = preset.synthetic["vocab_size"]
        return ClientWorker(ClientSpec.from_config(config, 0, 0, vocab), synthetic_examples(preset.synthetic))
    inputs = prepare_inputs(config)
    spec = ClientSpec.from_config(config, 0, inputs.pad_token_id, inputs.vocab_size)
    return ClientWorker(spec, inputs.data.client_shards[0])


def synthetic_examples(sizes: dict[str, int], seed: int = 0) -> list[EncodedExample]:
    """Random sequences of ``min_length``..``max_length`` tokens, the last ``answer_tokens`` labelled."""
    rng = random.Random(seed)
    examples = []
    for _ in range(sizes["examples"]):
        length = rng.randint(sizes["min_length"], sizes["max_length"])
        ids = tuple(rng.randrange(1, sizes["vocab_size"]) for _ in range(length))
        examples.append(EncodedExample(ids, length - sizes["answer_tokens"], 0))
    return examples


def batch_states(client: ClientWorker, rounds: int) -> list[dict[str, int]]:
    """The sampler's state before each of ``rounds`` consecutive batches (every variant replays them)."""
    start = client.sampler.state()
    states = []
    for _ in range(rounds):
        states.append(client.sampler.state())
        client.sampler.next_indices()
    client.sampler.load_state(start)
    return states


def batch_of(client: ClientWorker, state: dict[str, int]) -> BatchShape:
    client.sampler.load_state(state)
    indices = client.sampler.next_indices()
    return BatchShape.of(collate([client.shard[i] for i in indices], client.spec.pad_token_id))


def warm_prefix(client: ClientWorker, states: Sequence[dict[str, int]]) -> float:
    """Fill the client's prefix for every batch to be timed; returns seconds per example filled."""
    prefix = client.forward.prefix
    assert prefix is not None
    clock = PhaseClock(client.device)
    seen: set[int] = set()
    clock.mark("fill_start")
    for state in states:
        client.sampler.load_state(state)
        indices = client.sampler.next_indices()
        seen.update(indices)
        prefix.inputs_embeds(indices, max(len(client.shard[i].input_ids) for i in indices))
    clock.mark("fill_end")
    return clock.between("fill_start", "fill_end") / len(seen)


def interleaved_steps(client: ClientWorker, forwards: dict[str, Any], states: Sequence[dict[str, int]],
                      lowest: int, warmup_rounds: int) -> dict[str, list[StepSample]]:
    """Round by round, every variant trains on that round's batch; the first ``warmup_rounds`` are dropped."""
    samples: dict[str, list[StepSample]] = {name: [] for name in forwards}
    with StepTimer(client, lowest) as timer:
        for round_index, state in enumerate(states):
            taken = {}
            for name, forward in forwards.items():
                client.sampler.load_state(state)
                taken[name] = timer.step(forward)
                if round_index >= warmup_rounds:
                    samples[name].append(taken[name])
            logger.info("round %d/%d%s: %s", round_index + 1, len(states),
                        " (warm-up)" if round_index < warmup_rounds else "",
                        ", ".join(f"{name} {sample.wall.half_step_s:.3f} s" for name, sample in taken.items()))
    return samples


def peak_rss_bytes() -> int:
    """The process's peak resident set so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
