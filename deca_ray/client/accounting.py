"""What a client measures about itself: the bytes its training tensors hold, and device-synced time."""

from __future__ import annotations

import time

import torch

from deca_ray.algorithm.active_block import ActiveBlock


def tensor_memory(weight_bytes: int, weight_size: int, block: ActiveBlock | None) -> dict[str, int]:
    """Bytes of the tensors training holds now: weights, active-block grads, fp32 master, moments."""
    active = block.numel if block is not None else 0
    master = active * 4 if weight_size != 4 else 0
    moments = (block.moments.m.numel() + block.moments.v.numel()) * 4 if block is not None else 0
    grads = active * weight_size
    return {"weights": weight_bytes, "grads": grads, "master": master, "moments": moments,
            "total": weight_bytes + grads + master + moments}


def device_clock(device: torch.device) -> float:
    """perf_counter after the device's queued work: GPU kernels run asynchronously."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
