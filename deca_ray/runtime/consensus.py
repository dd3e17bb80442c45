"""ConsensusMonitor: the exact network-wide consensus distance, from every client's block.

This is a central gather (each client's active block is read by one actor), so the driver
asks for it only at block boundaries or every ``tracking.consensus_every_steps`` steps; each
step's cheap, local figure comes from the clients' own mix (``StepMetrics.local_consensus_distance``).
"""

from __future__ import annotations

import numpy as np
import torch

from deca_ray.algorithm.mixing import consensus_distance
from deca_ray.runtime.actor import read_only_tensor


class ConsensusMonitor:
    """Reads every client's active block from the object store and measures their disagreement.

    A long-lived actor rather than a task: a fresh task worker pays seconds of torch import
    on every call (measured: 6 s per step with 4 SmolLM2 clients, against 0.2 s here).
    """

    def consensus_distance(self, *blocks: np.ndarray) -> float:
        # (num_clients, block_numel)
        return consensus_distance(torch.stack([read_only_tensor(block) for block in blocks]))
