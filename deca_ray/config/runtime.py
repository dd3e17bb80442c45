"""Where and how a run executes: Ray runtime and failure policies, tracking, checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from deca_ray.config.base import ConfigPart


class RuntimeConfig(ConfigPart):
    """Where and how clients run."""

    backend: Literal["ray", "local"] = "ray"
    """``ray``: one actor per client; ``local``: all clients in this process (debugging, baselines)."""
    address: str | None = None
    """Ray address; default ``$RAY_ADDRESS``, else an embedded local cluster."""
    connect_timeout_s: float = Field(30.0, gt=0)
    """How long to try reaching the Ray cluster at ``address`` before giving up with an error."""
    cpus_per_client: float = Field(0.5, gt=0)
    gpus_per_client: float = Field(0.0, ge=0)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = "PACK"
    placement_timeout_s: float = Field(120.0, gt=0)
    step_timeout_s: float = Field(900.0, gt=0)
    torch_threads: int | None = Field(None, ge=1)
    """torch threads per actor; default: the actor's CPU share rounded up."""
    clients_per_actor: int = Field(1, ge=1)
    """Virtual clients per actor: clients in one process share the frozen base weights in memory
    (large simulations on few devices); each actor requests the CPUs / GPUs of all its clients."""
    object_store_memory_mb: int = Field(1024, ge=75)
    dashboard_host: str = "127.0.0.1"
    include_dashboard: bool = True
    auth_mode: Literal["disabled", "token"] = "disabled"
    """Ray 2.60 token auth for the embedded cluster; must match an external cluster's mode."""
    exchange: Literal["object_store", "rdt_gloo", "rdt_nccl"] = "object_store"
    """How x½ travels: Ray's object store, or Ray Direct Transport between actors (gloo on CPU;
    nccl keeps GPU tensors on the device and needs one GPU per actor). Alpha Ray API."""
    failure_policy: Literal["restart", "drop"] = "restart"
    """A dead client: ``restart`` it and roll everyone back to the last checkpoint, or ``drop`` it
    and re-weight the survivors (they roll back too, to stay consistent)."""
    max_restarts: int = Field(3, ge=0)
    """Restarts allowed per client actor before the run fails."""
    straggler_policy: Literal["wait", "skip"] = "wait"
    """``skip``: after ``straggler_timeout_s``, mix over the neighbours that arrived (renormalised)."""
    straggler_timeout_s: float = Field(60.0, gt=0)
    nan_policy: Literal["stop", "rollback"] = "stop"
    """Non-finite loss or block: stop with an error, or roll back to the last checkpoint and retry once."""
    frozen_prefix: Literal["auto", "on", "off"] = "auto"
    """Compute the hidden states entering the lowest trained layer once per example and train from there
    (``auto``: whenever nothing below that layer trains; ``on``: an error when that does not hold)."""
    frozen_prefix_max_mb: float = Field(2048.0, gt=0)
    """Per client: the cached prefixes of its whole shard may take at most this much memory."""

    @model_validator(mode="after")
    def _direct_transport_needs_one_client_per_actor(self) -> RuntimeConfig:
        if self.exchange != "object_store" and self.clients_per_actor > 1:
            raise ValueError(f"exchange {self.exchange} sends between actors; with clients_per_actor > 1 use "
                             "exchange object_store")
        if self.gpus_per_client * self.clients_per_actor > 1:
            raise ValueError(f"an actor's {self.clients_per_actor} virtual clients share its first GPU, so "
                             "gpus_per_client × clients_per_actor must be at most 1")
        return self

class TrackingConfig(ConfigPart):
    """MLflow: where runs, metrics and artifacts go."""

    enabled: bool = True
    tracking_uri: str | None = None
    """Default: ``$MLFLOW_TRACKING_URI``, else a sqlite store under ``output_dir``."""
    experiment: str = "deca-ray"
    """Used when set here; otherwise ``$MLFLOW_EXPERIMENT_NAME``, else ``deca-ray``."""
    run_name: str | None = None
    output_dir: Path = Path("runs")
    save_model: bool = True
    """Write the final network-average model as a Hugging Face directory ``<run dir>/model``."""
    log_model: bool = True
    """Also log that directory as the MLflow run's ``model/`` artifact."""
    system_metrics: bool = True
    """MLflow system metrics (CPU, memory, disk, network, GPU) of the driver's machine."""
    consensus_every_steps: int = Field(0, ge=0)
    """The exact consensus distance gathers every client's block, so it is measured at block boundaries
    (the last inner step of each block activation) and, with N > 0, also every N inner steps. Every step
    logs the gather-free ``local_consensus_distance`` from the clients' own mixes."""


class CheckpointConfig(ConfigPart):
    """Checkpoints: safetensors + JSON manifest, written atomically; what failures roll back to."""

    enabled: bool = True
    every_steps: int | None = Field(None, ge=1)
    """Also checkpoint every N inner steps (besides block boundaries)."""
    at_block_boundary: bool = True
    keep_last: int = Field(2, ge=1)
    directory: Path | None = None
    """Default: ``<run dir>/checkpoints``; must be shared storage on a multi-node cluster."""
