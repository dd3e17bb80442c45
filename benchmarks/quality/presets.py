"""What ``python -m benchmarks quality`` runs: BENCHMARK.md section Q, sized for a 2-core machine.

Every run is the base config plus a few overrides. All methods walk the same schedule
(rounds × blocks × inner steps), so each client takes the same number of local gradient
steps whatever the method (see ``deca_ray.methods.base``). The base sets only the options
every method shares; a method's own options (DECA's h and BMA, LoRA's rank, the adapter's
bottleneck) go into the runs of that method, where its options model accepts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QualityRun:
    name: str
    """File name of the run's result (``<name>.json``)."""
    table: str
    """``methods`` or ``ablations``."""
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QualityPreset:
    name: str
    base: dict[str, Any]
    runs: tuple[QualityRun, ...]


def _method(name: str, label: str, **overrides: Any) -> QualityRun:
    algorithm = {"type": name} | overrides.pop("algorithm", {})
    return QualityRun(name, "methods", label, {"algorithm": algorithm} | overrides)


def _ablation(name: str, label: str, **overrides: Any) -> QualityRun:
    """A DECA variant; only its network-average model is evaluated (per-client scores cost minutes)."""
    evaluation = {"per_client": False} | overrides.pop("evaluation", {})
    return QualityRun(f"ablation-{name}", "ablations", label, {"evaluation": evaluation} | overrides)


def _reference_deca(**options: Any) -> dict[str, Any]:
    """DECA's own options as the suite's reference DECA ran, plus ``options`` (for ``deca`` runs only).

    The reference is the setting before this suite chose defaults (h ÷ γ, two layers per block),
    pinned so that every ablation changes one thing from what was run.
    """
    return {"h_scale": "lr"} | options


# LoRA-style methods use the learning rate LoRA is conventionally trained with; SGD needs a
# larger step than Adam. None of these was tuned per method (one seed, no sweep): see BENCHMARKS.md.
_LORA_LR = 1e-3
_SGD_LR = 1e-2
_CLIENTS = 8
_BATCH = 2

FULL = QualityPreset(
    name="full",
    base={
        "name": "quality",
        "seed": 0,
        "num_clients": _CLIENTS,
        "model": {"name": "smollm2-135m"},
        "data": {"source": "bbc_news", "test_size": 100, "body_words": 32, "max_tokens": 80, "batch_size": _BATCH},
        "partition": {"type": "dirichlet", "alpha": 0.25},
        "topology": {"type": "erdos_renyi", "edge_probability": 0.5, "weights": "metropolis_hastings"},
        "algorithm": {
            "rounds": 1, "inner_steps": 20, "lr": 1e-4,
            # the top four of SmolLM2's 30 layers as two blocks: every method trains this region
            "blocks": {"layers_per_block": 2, "order": "fixed", "fixed_order": [14, 13]},
        },
        "evaluation": {"before_training": False, "per_client": True},
        "runtime": {"backend": "ray", "cpus_per_client": 0.25},
        "tracking": {"experiment": "deca-ray-quality", "consensus_every_steps": 4},
        "checkpoint": {"enabled": False},
    },
    runs=(
        _method("deca", "DECA (full BMA)", algorithm=_reference_deca(), evaluation={"before_training": True}),
        _method("dec_lora", "Dec-LoRA (r 8, q/v)", algorithm={"lr": _LORA_LR}),
        _method("decaf", "DeCAF (r 8, q/v)", algorithm={"lr": _LORA_LR}),
        _method("dec_adapter", "Dec-Adapter (bottleneck 32)", algorithm={"lr": _LORA_LR}),
        _method("dsgd", "D-PSGD (full region)", algorithm={"lr": _SGD_LR}),
        _method("dadam", "D-Adam (full region)"),
        _method("local_block_adam", "local block-wise Adam (no gossip)"),
        _method("centralized_adam", "centralised Adam (all data, batch × 8)",
                data={"batch_size": _BATCH * _CLIENTS}, runtime={"cpus_per_client": 2}),
        _ablation("without_bma", "w/o BMA (β1 = β2 = 1)", algorithm=_reference_deca(variant="without_bma")),
        _ablation("trivial_bma", "trivial BMA", algorithm=_reference_deca(variant="trivial_bma")),
        _ablation("h_new_minus_old", "h = new − old (÷ γ)", algorithm=_reference_deca(h_sign="new_minus_old")),
        _ablation("h_raw", "h = old − new, raw scale", algorithm=_reference_deca(h_scale="raw")),
        _ablation("h_unit_norm", "h = old − new, unit norm", algorithm=_reference_deca(h_scale="unit_norm")),
        _ablation("one_layer_blocks", "1 layer per block (same 4 layers)",
                  algorithm=_reference_deca(inner_steps=10,
                                            blocks={"layers_per_block": 1, "fixed_order": [29, 28, 27, 26]})),
        # The defaults chosen from the runs above, together (measured after them, see suite.json reruns)
        _ablation("chosen_defaults", "chosen defaults: h unit norm + 1 layer per block",
                  algorithm=_reference_deca(h_scale="unit_norm", inner_steps=10,
                                            blocks={"layers_per_block": 1, "fixed_order": [29, 28, 27, 26]})),
        _ablation("ring", "ring graph", algorithm=_reference_deca(), topology={"type": "ring"}),
        _ablation("bipartite", "complete bipartite graph", algorithm=_reference_deca(), topology={"type": "bipartite"}),
    ),
)

QUICK = QualityPreset(
    name="quick",
    base={
        "name": "quality-quick",
        "num_clients": 3,
        "model": {"name": "tiny-llama"},
        "data": {"max_train_examples": 60, "test_size": 12, "body_words": 20, "max_tokens": 48, "batch_size": 2},
        "topology": {"type": "ring"},
        "algorithm": {"rounds": 1, "inner_steps": 2, "lr": 1e-3},
        "evaluation": {"before_training": False, "per_client": True},
        "runtime": {"backend": "local"},
        "tracking": {"experiment": "deca-ray-quality-quick"},
        "checkpoint": {"enabled": False},
    },
    runs=(
        _method("deca", "DECA", evaluation={"before_training": True}),
        _method("decaf", "DeCAF", algorithm={"lora": {"rank": 2}}),
        _method("centralized_adam", "centralised Adam"),
        _ablation("without_bma", "w/o BMA", algorithm={"variant": "without_bma"}),
    ),
)
