"""ExperimentConfig: every knob of a deca_ray run, validated once at the edge.

Configs are YAML files plus dotted ``--set a.b=c`` overrides. Unknown keys are rejected
with their path and the closest valid name; bounds and cross-field rules are checked here
so that nothing downstream has to re-validate.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deca_ray.errors import ConfigError


class _Part(BaseModel):
    """Base of every config part: unknown keys are errors, assignments are re-validated."""

    # numbers become strings where a str is expected: `--set tracking.run_name=2024` and YAML
    # label_words keys like `0: World` are parsed as ints by YAML
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class TinyModelConfig(_Part):
    """Shape of the randomly initialised LLaMA used by tests and smoke runs (``name: tiny-llama``)."""

    num_layers: int = Field(4, ge=1)
    hidden_size: int = Field(64, ge=8)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(128, ge=8)

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelConfig:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                "hidden_size must be divisible by num_heads and num_heads by num_kv_heads"
            )
        return self


class ModelConfig(_Part):
    """Which causal LM every client starts from."""

    name: str = "smollm2-135m"
    """``smollm2-135m`` (packaged, offline), ``tiny-llama`` (random, for tests), a hub id or a local path."""
    tokenizer: str | None = None
    """Tokenizer hub id or path; default: the model's own (packaged SmolLM2 tokenizer for presets)."""
    tiny: TinyModelConfig = TinyModelConfig()
    dtype: Literal["float32", "bfloat16"] = "float32"
    cache_dir: Path | None = None
    """Where converted models live; default ``$DECA_RAY_CACHE`` or ``~/.cache/deca_ray``."""


class DataConfig(_Part):
    """Where examples come from and how they become token sequences."""

    source: str = "bbc_news"
    """``bbc_news`` / ``fortunes`` (packaged), a local .json/.jsonl/.csv/.parquet file, or a hub dataset name."""
    task: Literal["classification", "instruction"] = "classification"
    text_field: str = "text"
    label_field: str = "label"
    title_field: str | None = "title"
    prompt_field: str = "prompt"
    response_field: str = "response"
    messages_field: str = "messages"
    category_field: str | None = None
    """Instruction data: optional field to partition by (``partition.type: by_field``)."""
    split: str = "train"
    """Split to read from local files or hub datasets."""
    label_words: dict[str, str] | None = None
    """Verbalizer: label → answer word; default: the label itself."""
    instruction: str | None = None
    """Classification prompt; ``{labels}`` is replaced by the comma-separated label words."""
    test_size: int | float = 150
    """Held-out examples (int) or fraction (float in (0, 1)), split off stratified before partitioning."""
    max_train_examples: int | None = Field(None, ge=1)
    """Stratified, seeded subsample of the training pool (short runs)."""
    body_words: int | None = Field(60, ge=1)
    """Keep the first N words of each text before tokenising (long articles)."""
    max_tokens: int = Field(128, ge=16)
    """Token budget per example; the text is truncated, never the answer."""
    batch_size: int = Field(4, ge=1)

    @field_validator("test_size")
    @classmethod
    def _test_size_in_range(cls, test_size: int | float) -> int | float:
        # a field validator, so the error is reported at data.test_size, not at data
        if isinstance(test_size, float) and not 0.0 < test_size < 1.0:
            raise ValueError("a fraction must lie in (0, 1); use an int for a count")
        if isinstance(test_size, int) and test_size < 1:
            raise ValueError("hold out at least 1 example")
        return test_size


class PartitionConfig(_Part):
    """How the training pool is split across clients (non-IID by default)."""

    type: Literal["dirichlet", "iid", "shards", "by_field"] = "dirichlet"
    alpha: float = Field(0.25, gt=0)
    """Dirichlet concentration: smaller is more skewed."""
    min_per_client: int = Field(2, ge=1)
    """Dirichlet: resample until every client holds at least this many examples."""
    shards_per_client: int = Field(2, ge=1)
    field: str | None = None
    """by_field: the field whose values define clients (default: the label / category field)."""
    max_resamples: int = Field(1000, ge=1)


class TopologyConfig(_Part):
    """Communication graph over clients and its mixing weights."""

    type: Literal[
        "ring",
        "torus",
        "complete",
        "star",
        "bipartite",
        "erdos_renyi",
        "exponential",
        "one_peer_exponential",
        "custom",
    ] = "ring"
    weights: Literal["metropolis_hastings", "max_degree", "uniform_neighbour"] = "metropolis_hastings"
    edge_probability: float = Field(0.5, gt=0, le=1)
    """erdos_renyi: probability of each edge."""
    torus_shape: tuple[int, int] | None = None
    """torus: rows × columns (default: the most square factorisation of num_clients)."""
    edges: list[tuple[int, int]] | None = None
    """custom: undirected edges between client indices 0..num_clients-1."""
    seed: int | None = None
    """erdos_renyi: graph seed (default: the experiment seed)."""
    max_resamples: int = Field(1000, ge=1)


class RegexGroup(_Part):
    """A custom block: every parameter whose name matches ``pattern`` (re.search)."""

    name: str
    pattern: str


class BlocksConfig(_Part):
    """How parameters are cut into blocks and in which order blocks are visited."""

    layers_per_block: int = Field(1, ge=1)
    """Consecutive transformer layers per block (1: measured best, BENCHMARKS.md section Q)."""
    include_embeddings: bool = False
    include_final_norm: bool = False
    include_lm_head: bool = False
    groups: list[RegexGroup] = []
    """Custom blocks, matched before the layer rule (first matching group wins)."""
    order: Literal["ascending", "descending", "random", "fixed"] = "ascending"
    fixed_order: list[int] | None = None

    @model_validator(mode="after")
    def _fixed_order_given(self) -> BlocksConfig:
        if self.order == "fixed" and not self.fixed_order:
            raise ValueError("order 'fixed' needs fixed_order, e.g. [3, 1, 0, 2]")
        return self


class LoraConfig(_Part):
    """LoRA factors for ``dec_lora`` and ``decaf`` (built with peft on the layers DECA's blocks cover)."""

    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    """Scaling numerator: the update is (alpha / rank)·B·A."""
    target_modules: list[str] = ["q_proj", "v_proj"]
    """Module name suffixes that get LoRA factors (peft ``target_modules``)."""


class AdapterConfig(_Part):
    """Bottleneck adapters for ``dec_adapter``: one after each covered layer's MLP (Pfeiffer placement)."""

    bottleneck: int = Field(32, ge=1)
    """Hidden width of the down-projection."""


class AlgorithmConfig(_Part):
    """The training method, its schedule and hyper-parameters (DECA's symbols as in ALGORITHM.md)."""

    type: str = "deca"
    """Method by registered name: ``deca``, ``dec_lora``, ``decaf``, ``dec_adapter``, ``dsgd``, ``dadam``,
    ``local_block_adam``, ``centralized_adam`` (``deca-ray methods`` lists them). Checked against the
    registry in ``deca_ray.methods`` when a run starts, since the registry sits above config."""
    rounds: int = Field(1, ge=1)
    """T: sweeps over all blocks."""
    inner_steps: int = Field(5, ge=1)
    """R: local steps (each followed by one gossip exchange) per block activation."""
    lr: float = Field(5e-5, gt=0)
    """γ."""
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    """α1."""
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    """α2."""
    eps: float = Field(1e-8, gt=0)
    bma_beta1: float = Field(0.9, ge=0, le=1)
    """β1 (1 disables the first-moment correction)."""
    bma_beta2: float = Field(0.999, ge=0, le=1)
    """β2."""
    variant: Literal["full", "without_bma", "trivial_bma"] = "full"
    h_sign: Literal["old_minus_new", "new_minus_old"] = "old_minus_new"
    h_scale: Literal["raw", "lr", "unit_norm"] = "unit_norm"
    """Scale of h: ``unit_norm`` measured best (BENCHMARKS.md section Q); ``lr`` divides by γ; ``raw``."""
    moment_lifetime: Literal["per_activation", "persistent"] = "per_activation"
    blocks: BlocksConfig = BlocksConfig()
    lora: LoraConfig = LoraConfig()
    adapter: AdapterConfig = AdapterConfig()


class EvaluationConfig(_Part):
    """Held-out evaluation of the network-average model and of the clients' own models."""

    before_training: bool = True
    after_training: bool = True
    max_examples: int | None = Field(None, ge=1)
    """Evaluate on at most this many held-out examples (first ones of the fixed split)."""
    scoring: Literal["mean", "sum"] = "mean"
    """Label log-likelihood: mean over the label's tokens (length-normalised) or sum."""
    per_client: bool = True
    batch_size: int = Field(16, ge=1)


class RuntimeConfig(_Part):
    """Where and how clients run."""

    backend: Literal["ray", "local"] = "ray"
    """``ray``: one actor per client; ``local``: all clients in this process (debugging, baselines)."""
    address: str | None = None
    """Ray address; default ``$RAY_ADDRESS``, else an embedded local cluster."""
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

    @model_validator(mode="after")
    def _direct_transport_needs_one_client_per_actor(self) -> RuntimeConfig:
        if self.exchange != "object_store" and self.clients_per_actor > 1:
            raise ValueError(f"exchange {self.exchange} sends between actors; with clients_per_actor > 1 use "
                             "exchange object_store")
        if self.gpus_per_client * self.clients_per_actor > 1:
            raise ValueError(f"an actor's {self.clients_per_actor} virtual clients share its first GPU, so "
                             "gpus_per_client × clients_per_actor must be at most 1")
        return self

class TrackingConfig(_Part):
    """MLflow: where runs, metrics and artifacts go."""

    enabled: bool = True
    tracking_uri: str | None = None
    """Default: a sqlite store under ``output_dir``."""
    experiment: str = "deca-ray"
    run_name: str | None = None
    output_dir: Path = Path("runs")
    consensus_every_steps: int = Field(1, ge=0)
    """Measure the consensus distance every N inner steps (0: never); it reads every client's block."""


class CheckpointConfig(_Part):
    """Checkpoints: safetensors + JSON manifest, written atomically; what failures roll back to."""

    enabled: bool = True
    every_steps: int | None = Field(None, ge=1)
    """Also checkpoint every N inner steps (besides block boundaries)."""
    at_block_boundary: bool = True
    keep_last: int = Field(2, ge=1)
    directory: Path | None = None
    """Default: ``<run dir>/checkpoints``; must be shared storage on a multi-node cluster."""


class ExperimentConfig(_Part):
    """One deca_ray experiment: model, data and its split, graph, algorithm, runtime, tracking."""

    name: str = "deca"
    seed: int = 0
    num_clients: int = Field(4, ge=1)
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    partition: PartitionConfig = PartitionConfig()
    topology: TopologyConfig = TopologyConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    tracking: TrackingConfig = TrackingConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ExperimentConfig:
        _check_topology_fits_clients(self.topology, self.num_clients)
        max_train = self.data.max_train_examples
        if max_train is not None:
            needed = self.num_clients * (
                self.partition.min_per_client if self.partition.type == "dirichlet" else 1
            )
            if max_train < needed:
                raise ValueError(
                    f"data.max_train_examples={max_train} cannot give {self.num_clients} clients "
                    f"data (needs at least {needed}); raise it or lower num_clients"
                )
        return self

    def fingerprint(self) -> str:
        """Stable hash of everything that changes the training trajectory."""
        payload = self.model_dump(mode="json", exclude={"runtime", "tracking", "checkpoint", "evaluation"})
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


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config (or the defaults), apply ``a.b=c`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for override in overrides or []:
        _apply_override(raw, override)
    return config_from_dict(raw)


def merge_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Merge nested ``overrides`` into a raw config dict in place (sections merge, values replace)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            merge_overrides(raw[key], value)
        else:
            raw[key] = value


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a plain dict, turning pydantic errors into one ConfigError naming each field."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def dump_config(config: ExperimentConfig) -> str:
    """The fully resolved config as YAML (what a run actually used)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a path to a YAML file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, not {type(raw).__name__}")
    return raw


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} must look like key.path=value, e.g. algorithm.lr=1e-4")
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"override {override!r}: {prefix} is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else None


def _describe(error: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key{_suggestion(item['loc'])}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"  {path}: {message}")
    return "\n".join(lines)


def _suggestion(loc: tuple[Any, ...]) -> str:
    names = _field_names_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; valid keys here: {', '.join(sorted(names))}" if names else ""


def _field_names_at(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
