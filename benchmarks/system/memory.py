"""Section d: per-client memory, DECA against full-model Adam.

Tensor bytes are computed from parameter counts (fp32): DECA holds the weights M, the
active block's gradients and its two Adam moments; full-model Adam holds M weights, M
gradients and 2M moments. Process RSS is measured in two child processes (one DECA client,
one full-model Adam trainer), each loading the model and running a few steps on the same
batch shape, so neither inherits the parent's allocations.

The peak is the kernel's high-water mark of the child's own address space (``VmHWM`` in
/proc/self/status). ``ru_maxrss`` is not used on Linux: it survives fork + exec, so a child
of a large parent reports the parent's RSS (measured: both children read exactly the
benchmark process's 763 MiB).

Run as ``python -m benchmarks.system.memory MODE SPEC_JSON`` (from the repository root) it is that child: it prints one
JSON line with its peak RSS and the parameter counts.
"""

from __future__ import annotations

import json
import logging
import random
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.results import REPOSITORY
from benchmarks.system.presets import SystemPreset
from benchmarks.system.timing import ratio_entry

logger = logging.getLogger(__name__)

MODES = ("deca", "full_adam")
FP32_BYTES = 4


def measure_memory(preset: SystemPreset, vocab_size: int, pad_token_id: int, timeout_s: float = 600.0) -> dict:
    """Analytic tensor-bytes ratio plus measured RSS of both children."""
    spec = {"model": preset.memory_model, "vocab_size": vocab_size, "pad_token_id": pad_token_id,
            "batch_size": preset.batch_size, "seq_len": preset.max_tokens, "steps": preset.memory_steps,
            "block_index": 0}
    children = run_children(spec, timeout_s)
    counts = children["deca"]
    section = analytic_section(counts["model_numel"], counts["block_numels"])
    section["rss"] = {mode: {k: v for k, v in child.items() if k.startswith("rss")} for mode, child in children.items()}
    section["rss_ratio"] = children["deca"]["rss_peak_bytes"] / children["full_adam"]["rss_peak_bytes"]
    section["rss_setup"] = spec | {"note": "block 0 trained: backward runs through every layer, the worst case"}
    return section


def analytic_section(model_numel: int, block_numels: list[int]) -> dict:
    """DECA = M + 3·(largest block) against full Adam = 4M, target (1 + 3/B)/4, fp32 bytes."""
    num_blocks = len(block_numels)
    weights = model_numel * FP32_BYTES
    largest_block = max(block_numels) * FP32_BYTES
    deca = weights + 3 * largest_block  # weights + active-block grads + m + v
    full = 4 * weights  # weights + grads + m + v over the whole model
    return ratio_entry(
        "per-client peak tensor memory, DECA ÷ full-model Adam (fp32)", deca / full,
        (1 + 3 / num_blocks) / 4, "<=",
        deca_tensor_bytes=deca, full_adam_tensor_bytes=full, model_bytes=weights,
        largest_block_bytes=largest_block, num_blocks=num_blocks,
        trainable_bytes=sum(block_numels) * FP32_BYTES,
    )


def run_children(spec: dict[str, Any], timeout_s: float) -> dict[str, dict]:
    """Both children at once (each measures only its own peak, so they may share the CPUs)."""
    logger.info("memory: measuring a DECA client process and a full-model Adam process")
    children = {
        mode: subprocess.Popen([sys.executable, "-m", "benchmarks.system.memory", mode, json.dumps(spec)],
                               cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for mode in MODES
    }
    return {mode: _child_result(mode, child, timeout_s) for mode, child in children.items()}


def _child_result(mode: str, child: subprocess.Popen, timeout_s: float) -> dict:
    try:
        stdout, stderr = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        raise
    if child.returncode != 0:
        raise RuntimeError(f"memory child ({mode}) failed with status {child.returncode}: {stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the child


def child_main(mode: str, spec: dict[str, Any]) -> dict:
    """Load the model, train ``spec['steps']`` steps as ``mode``, report peak RSS and counts."""
    import torch

    torch.set_num_threads(1)  # memory, not speed: one thread keeps thread-local buffers out of it
    worker_or_model, partition, step = _build(mode, spec)
    loaded = peak_rss_bytes()
    for _ in range(spec["steps"]):
        step()
    return {
        "mode": mode,
        "rss_after_load_bytes": loaded,
        "rss_peak_bytes": peak_rss_bytes(),
        "model_numel": sum(p.numel() for p in worker_or_model.parameters()),
        "block_numels": [block.numel for block in partition.blocks],
    }


def _build(mode: str, spec: dict[str, Any]):
    """(model, block partition, one training step) for a DECA client or a full-model Adam trainer."""
    import torch

    from deca_ray.client import ClientSpec, ClientWorker, block_partition
    from deca_ray.config import config_from_dict
    from deca_ray.data.batching import collate
    from deca_ray.models import load_model

    config = config_from_dict({"model": spec["model"], "data": {"batch_size": spec["batch_size"]},
                               "algorithm": {"lr": 1e-4, "blocks": {"layers_per_block": 2}}})
    shard = _synthetic_shard(spec["vocab_size"], spec["seq_len"], count=2 * spec["batch_size"])
    if mode == "deca":
        client_spec = ClientSpec.from_config(config, 0, spec["pad_token_id"], spec["vocab_size"])
        worker = ClientWorker(client_spec, shard)
        worker.begin_block(spec["block_index"])

        def deca_step() -> None:
            worker.half_step()
            worker.mix([], 1.0)  # no neighbours: the client's own side of an inner step

        return worker.model, worker.partition, deca_step
    model = load_model(config.model, spec["vocab_size"], seed=config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = collate(shard[: spec["batch_size"]], spec["pad_token_id"])

    def adam_step() -> None:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep the gradients allocated: part of Adam's peak

    return model, block_partition(model, config.algorithm), adam_step


def _synthetic_shard(vocab_size: int, seq_len: int, count: int) -> list:
    from deca_ray.data.types import EncodedExample

    rng = random.Random(0)
    return [EncodedExample(tuple(rng.randrange(1, vocab_size) for _ in range(seq_len)), seq_len - 2)
            for _ in range(count)]


def peak_rss_bytes() -> int:
    """This address space's peak resident set (VmHWM); ``ru_maxrss`` where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux; bytes on macOS (rough)


if __name__ == "__main__":
    print(json.dumps(child_main(sys.argv[1], json.loads(sys.argv[2]))))
