"""The machine's matmul FLOP/s at a step's own matrix shapes, measured in the same process and thread count."""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.step.flops import ModelShape

_SAMPLE_S = 2e-3
HEAD_SHAPE = "head: answers×d @ d×V"


def step_matmul_shapes(shape: ModelShape, tokens: int, labelled: int) -> dict[str, tuple[int, int, int]]:
    """(m, k, n) of the step's main products: ``tokens`` rows (the batch as the kernels see it, padded)."""
    d, f, kv = shape.hidden_size, shape.intermediate_size, shape.kv_width
    return {
        "q, o: tokens×d @ d×d": (tokens, d, d),
        "k, v: tokens×d @ d×d_kv": (tokens, d, kv),
        "gate, up: tokens×d @ d×f": (tokens, d, f),
        "down: tokens×f @ f×d": (tokens, f, d),
        "weight grad: d×tokens @ tokens×f": (d, tokens, f),
        HEAD_SHAPE: (max(labelled, 1), d, shape.vocab_size),
    }


def matmul_rate(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """Best FLOP/s over ``repeats`` timed samples of (m×k)@(k×n) into a preallocated output.

    A sample is as many back-to-back products as fill ~2 ms (one on a CPU at these sizes; many
    on a GPU, where one product takes microseconds and the synchronisation would dominate).
    """
    left = torch.randn(m, k, dtype=dtype, device=device)
    right = torch.randn(k, n, dtype=dtype, device=device)
    out = torch.empty(m, n, dtype=dtype, device=device)
    calls = max(1, min(1000, int(_SAMPLE_S / _timed(left, right, out, 1))))  # the first call also warms up
    best = min(_timed(left, right, out, calls) for _ in range(repeats)) / calls
    return 2 * m * k * n / best


def matmul_peak(shapes: dict[str, tuple[int, int, int]], dtype: torch.dtype, device: torch.device,
                repeats: int) -> dict[str, Any]:
    """Each shape's best FLOP/s; the peak is the fastest of them (what the step's products reach at best)."""
    per_shape = {name: {"m": m, "k": k, "n": n, "flop_per_s": matmul_rate(m, k, n, dtype, device, repeats)}
                 for name, (m, k, n) in shapes.items()}
    return {"dtype": str(dtype).removeprefix("torch."), "repeats": repeats, "per_shape": per_shape,
            "peak_flop_per_s": max(entry["flop_per_s"] for entry in per_shape.values())}


def best_of(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Two measurements of the same shapes (before and after the steps): each shape's faster one."""
    per_shape = {name: max(entry, second["per_shape"][name], key=lambda e: e["flop_per_s"])
                 for name, entry in first["per_shape"].items()}
    return {**first, "per_shape": per_shape,
            "peak_flop_per_s": max(entry["flop_per_s"] for entry in per_shape.values())}


def _timed(left: torch.Tensor, right: torch.Tensor, out: torch.Tensor, calls: int) -> float:
    _sync(out.device)
    started = time.perf_counter()
    for _ in range(calls):
        torch.matmul(left, right, out=out)
    _sync(out.device)
    return time.perf_counter() - started


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
