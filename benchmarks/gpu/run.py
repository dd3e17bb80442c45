"""GPU check (BENCHMARK.md section G): DECA with bf16 weights + fp32 active-block state on one GPU.

Measures, on a SmolLM2-shaped LLaMA (random weights: the packaged GGUF is too large to ship to
a GPU machine with no network), tokens/s and peak GPU memory of one DECA client against
single-GPU mixed-precision full Adam (bf16 weights, fp32 master weights and moments), and
several clients sharing the GPU: in one process (the reference loop) and, where Ray is
installed, as client actors with fractional ``num_gpus``. Writes one JSON result.

    python -m benchmarks gpu OUT_DIR [--steps N]    (scripts/gpu_check.sh runs it after the GPU tests)
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.driving import drive
from benchmarks.results import metadata
from deca_ray.algorithm.topology import build_topology
from deca_ray.client import ClientSpec, ClientWorker
from deca_ray.config import config_from_dict
from deca_ray.data.types import EncodedExample
from deca_ray.errors import DecaError
from deca_ray.reference import run_reference

logger = logging.getLogger(__name__)

SMOLLM2_SHAPE = {"num_layers": 30, "hidden_size": 576, "num_heads": 9, "num_kv_heads": 3, "intermediate_size": 1536}
VOCAB = 49152


def _config(num_clients: int, batch_size: int, inner_steps: int, blocks: dict | None = None):
    return config_from_dict({
        "num_clients": num_clients,
        "model": {"name": "tiny-llama", "tiny": SMOLLM2_SHAPE, "dtype": "bfloat16"},
        "data": {"batch_size": batch_size},
        "algorithm": {"lr": 5e-5, "inner_steps": inner_steps, "blocks": {"layers_per_block": 2, **(blocks or {})}},
    })


def _examples(count: int, length: int, seed: int) -> list[EncodedExample]:
    rng = random.Random(seed)
    return [EncodedExample(tuple(rng.randrange(VOCAB) for _ in range(length)), length - 4, 0) for _ in range(count)]


def _timed(step, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times[1:]  # the first step pays allocation and kernel selection


def deca_client(batch_size: int, length: int, steps: int) -> dict:
    """One client: the bottom block (backward through every layer) and the top block."""
    config = _config(1, batch_size, steps)
    client = ClientWorker(ClientSpec.from_config(config, 0, 0, VOCAB), _examples(256, length, 0))
    results: dict[str, Any] = {}
    for name, block in (("bottom_block", 0), ("top_block", client.partition.num_blocks - 1)):
        client.begin_block(block)
        torch.cuda.reset_peak_memory_stats()

        def step() -> None:
            client.half_step()
            client.mix([], self_weight=1.0)

        times = _timed(step, steps)
        results[name] = {
            "median_step_s": statistics.median(times),
            "tokens_per_s": batch_size * length / statistics.median(times),
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
            "tensor_memory_bytes": client.tensor_memory(),
        }
    results["num_blocks"] = client.partition.num_blocks
    results["bf16_weight_bytes"] = client.tensor_memory()["weights"]
    return results


def full_adam(batch_size: int, length: int, steps: int) -> dict:
    """Mixed-precision full Adam: bf16 weights and grads, fp32 master weights and moments."""
    config = _config(1, batch_size, steps)
    client = ClientWorker(ClientSpec.from_config(config, 0, 0, VOCAB), _examples(256, length, 0))
    model = client.model
    model.requires_grad_(True)
    params = list(model.parameters())
    masters = [p.detach().float().clone().requires_grad_(True) for p in params]
    optimizer = torch.optim.Adam(masters, lr=5e-5)
    examples = _examples(batch_size, length, 1)
    ids = torch.tensor([e.input_ids for e in examples], device=client.device)
    torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        for master, param in zip(masters, params, strict=True):
            master.grad = param.grad.float()  # type: ignore[union-attr]  # every parameter is in the loss
            param.grad = None
        optimizer.step()
        with torch.no_grad():
            for master, param in zip(masters, params, strict=True):
                param.copy_(master)

    times = _timed(step, steps)
    return {"median_step_s": statistics.median(times), "tokens_per_s": batch_size * length / statistics.median(times),
            "peak_allocated_bytes": torch.cuda.max_memory_allocated()}


def shared_gpu(num_clients: int, batch_size: int, length: int, inner_steps: int) -> dict:
    """Several clients on one GPU in one process (ring), the top block: per-client throughput."""
    config = _config(num_clients, batch_size, inner_steps, blocks={"order": "fixed", "fixed_order": [14]})
    clients = [ClientWorker(ClientSpec.from_config(config, i, 0, VOCAB), _examples(64, length, i))
               for i in range(num_clients)]
    torch.cuda.reset_peak_memory_stats()
    history = run_reference(clients, build_topology("ring", num_clients), config.algorithm, seed=0)
    steps = history[1:]
    return {
        "num_clients": num_clients,
        "median_step_s": statistics.median(m.step_time_s for m in steps),
        "median_exchange_s": statistics.median(m.exchange_time_s for m in steps),
        "tokens_per_s_per_client": statistics.median(
            statistics.fmean(m.tokens_per_s) for m in steps
        ),
        "peak_allocated_bytes_all_clients": torch.cuda.max_memory_allocated(),
    }


def ray_shared_gpu(num_clients: int, batch_size: int, length: int, inner_steps: int) -> dict:
    """Client actors sharing one GPU by fractional ``num_gpus`` (object-store exchange).

    Needs Ray on the GPU machine (the project's Docker image has it; a bare lent GPU box may not).
    """
    try:
        import ray
    except ImportError:
        return {"skipped": "ray is not installed on this machine"}
    from deca_ray.runtime.ray_group import RayClientGroup
    from deca_ray.runtime.remote_topology import RemoteTopology
    from deca_ray.runtime.topology_service import TopologyService

    config = _config(num_clients, batch_size, inner_steps, blocks={"order": "fixed", "fixed_order": [14]})
    runtime = config.runtime.model_copy(update={"gpus_per_client": 1 / num_clients, "cpus_per_client": 1.0})
    ray.init(address="local", include_dashboard=False)
    try:
        specs = [ClientSpec.from_config(config, i, 0, VOCAB) for i in range(num_clients)]
        group = RayClientGroup(specs, [_examples(64, length, i) for i in range(num_clients)], runtime)
        topology = RemoteTopology(TopologyService(build_topology("ring", num_clients)))
        history = drive(group, topology, config.model_copy(update={"runtime": runtime}))[1:]
        group.shutdown()
    finally:
        ray.shutdown()
    return {
        "num_clients": num_clients,
        "gpus_per_client": runtime.gpus_per_client,
        "median_step_s": statistics.median(m.step_time_s for m in history),
        "median_exchange_s": statistics.median(m.exchange_time_s for m in history),
        "tokens_per_s_per_client": statistics.median(statistics.fmean(m.tokens_per_s) for m in history),
    }


class NoGpuError(DecaError):
    """The GPU benchmark was asked for on a machine without a CUDA GPU."""


def run_gpu_benchmark(out_dir: Path, steps: int = 8, batch_size: int = 8, length: int = 256) -> Path:
    """Measure every section on this machine's GPU and write ``<out_dir>/gpu-<time>.json``; returns its path."""
    if not torch.cuda.is_available():
        raise NoGpuError("no CUDA GPU: the GPU benchmark only runs on a GPU machine (scripts/gpu_check.sh)")
    torch.manual_seed(0)
    setting = {"out_dir": out_dir, "steps": steps, "batch_size": batch_size, "length": length,
               "model": "SmolLM2-135M shape, random weights",
               "dtype": "bfloat16 weights, fp32 active-block master/grads/moments"}
    result: dict[str, Any] = {"kind": "gpu", "meta": metadata(), "setting": setting}
    sections = {
        "deca_client": lambda: deca_client(batch_size, length, steps),
        "full_adam_mixed_precision": lambda: full_adam(batch_size, length, steps),
        "shared_gpu_4_clients": lambda: shared_gpu(4, batch_size, length, steps),
        "ray_actors_sharing_gpu": lambda: ray_shared_gpu(4, batch_size, length, steps),
    }
    for name, measure in sections.items():
        result[name] = measure()
        torch.cuda.empty_cache()  # each section's models are gone once it returns; start the next one clean
        logger.info("%s done", name)
    result["ratios"] = ratios(result["deca_client"], result["full_adam_mixed_precision"])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"gpu-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def ratios(deca: dict, full: dict) -> dict[str, float]:
    """DECA against full Adam, and the paper's claims at this number of blocks B."""
    weights = deca["bf16_weight_bytes"]
    return {
        "peak_memory_deca_over_full_adam": deca["bottom_block"]["peak_allocated_bytes"] / full["peak_allocated_bytes"],
        "paper_claim_deca_over_full_adam": (1 + 10 / deca["num_blocks"]) / 9,
        "deca_tensor_memory_over_M": deca["bottom_block"]["tensor_memory_bytes"]["total"] / weights,
        "paper_claim_deca_over_M": 1 + 10 / deca["num_blocks"],
        "tokens_per_s_deca_bottom_over_full_adam": deca["bottom_block"]["tokens_per_s"] / full["tokens_per_s"],
    }
