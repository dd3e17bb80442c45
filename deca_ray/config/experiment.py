"""ExperimentConfig: one run's whole configuration, with the rules that span its sections."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from deca_ray.config.base import ConfigPart
from deca_ray.config.inputs import DataConfig, ModelConfig, PartitionConfig, TopologyConfig
from deca_ray.config.runtime import CheckpointConfig, RuntimeConfig, TrackingConfig
from deca_ray.config.training import AlgorithmConfig, EvaluationConfig

DEFAULT_METHOD = "deca"
MAX_SEED = 2**32 - 1
"""Seeds are unsigned 32-bit integers (what numpy, torch and networkx all accept)."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def method_options(name: str) -> type[AlgorithmConfig]:
    """The options model of the method registered as ``name`` (raises ValueError if there is none).

    The registry sits above config (methods import config), so it is imported when first needed.
    """
    from deca_ray.methods import options_model

    return options_model(name)


def methods_with_option(key: str) -> list[str]:
    """The registered methods whose options include ``key`` (to say whose option a misplaced key is)."""
    from deca_ray.methods import method_names, options_model

    return [name for name in method_names() if key in options_model(name).model_fields]


def default_algorithm() -> AlgorithmConfig:
    return method_options(DEFAULT_METHOD)()


class ExperimentConfig(ConfigPart):
    """One deca_ray experiment: model, data and its split, graph, algorithm, runtime, tracking."""

    name: str = "deca"
    """Names the run directory ``<tracking.output_dir>/<name>-<time>``: one safe path component."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    num_clients: int = Field(4, ge=1)
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    partition: PartitionConfig = PartitionConfig()
    topology: TopologyConfig = TopologyConfig()
    algorithm: SerializeAsAny[AlgorithmConfig] = Field(default_factory=default_algorithm)
    """The run's method and its options: the options model of the method ``algorithm.type`` names."""
    evaluation: EvaluationConfig = EvaluationConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    tracking: TrackingConfig = TrackingConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    @field_validator("name")
    @classmethod
    def _name_is_one_path_component(cls, name: str) -> str:
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} names the run directory, so it must be one plain path component: letters, "
                             "digits, '.', '_' and '-', starting with a letter or digit (at most 100 characters)")
        return name

    @field_validator("algorithm", mode="before")
    @classmethod
    def _as_method_options(cls, value: Any) -> Any:
        """A discriminated union on ``type`` over the registered methods (which a test module may extend)."""
        if isinstance(value, AlgorithmConfig):
            value = value.model_dump()
        if not isinstance(value, dict):
            return value  # pydantic reports the wrong type
        name = value.get("type", DEFAULT_METHOD)
        try:
            options = method_options(str(name))
        except ValueError as error:
            raise ValidationError.from_exception_data(
                "AlgorithmConfig", [{"type": "value_error", "loc": ("type",), "input": name, "ctx": {"error": error}}]
            ) from None
        return options.model_validate(value)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ExperimentConfig:
        _check_topology_fits_clients(self.topology, self.num_clients)
        max_train = self.data.max_train_examples
        if max_train is not None:
            needed = self.num_clients * (self.partition.min_per_client if self.partition.type == "dirichlet" else 1)
            if max_train < needed:
                raise ValueError(
                    f"data.max_train_examples={max_train} cannot give {self.num_clients} clients "
                    f"data (needs at least {needed}); raise it or lower num_clients"
                )
        return self

    def fingerprint(self) -> str:
        """Stable hash of everything that changes the training trajectory of the steps a run has done.

        ``algorithm.rounds`` is left out: more rounds extend a run without changing its earlier steps
        (``deca-ray run --resume RUN --set algorithm.rounds=N``).
        """
        payload = self.model_dump(mode="json", exclude={"runtime": True, "tracking": True, "checkpoint": True,
                                                         "evaluation": True, "algorithm": {"rounds"}})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _check_topology_fits_clients(topology: TopologyConfig, num_clients: int) -> None:
    kind = topology.type
    if kind in ("star", "bipartite") and num_clients < 2:
        raise ValueError(f"topology.type={kind} needs num_clients >= 2 (got {num_clients})")
    if kind == "torus" and topology.torus_shape is not None:
        rows, cols = topology.torus_shape
        if rows * cols != num_clients:
            raise ValueError(
                f"topology.torus_shape={rows}x{cols} has {rows * cols} nodes but num_clients={num_clients}"
            )
    if kind == "custom":
        if topology.edges is None:
            raise ValueError("topology.type=custom needs topology.edges, e.g. [[0, 1], [1, 2]]")
        for edge in topology.edges:
            for node in edge:
                if not 0 <= node < num_clients:
                    raise ValueError(
                        f"topology.edges names client {node}, but clients are 0..{num_clients - 1} "
                        f"(num_clients={num_clients})"
                    )
