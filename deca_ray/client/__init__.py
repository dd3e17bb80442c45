"""A client: its model and the weights it may write, the active block, checkpoints and accounting.

    model.py       ClientSpec, x0 (pretrained + the method's modules), ClientWeights (shared-weight safety)
    worker.py      ClientWorker: the verbs of one inner step, checkpoints, evaluation
    state.py       ClientState: a client's checkpoint as tensors + metadata
    accounting.py  tensor memory and device-synced time
"""

from deca_ray.client.model import (
    ClientSpec,
    block_partition,
    client_device,
    initial_model,
    prepare_for_method,
    shared_base_model,
)
from deca_ray.client.worker import ClientWorker

__all__ = [
    "ClientSpec", "ClientWorker", "block_partition", "client_device", "initial_model", "prepare_for_method",
    "shared_base_model",
]
