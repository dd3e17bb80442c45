"""What ``python -m benchmarks lab`` runs: every method, and DECA under every h definition × scale × β.

Every run of a preset shares the task, the model shape, the schedule (rounds × blocks × inner
steps, so the same number of local gradient steps for every method) and, per seed, the data,
its partition, the graph, the initial model and the batch order; runs differ only in
``algorithm``. Learning rates are one per method family, fixed before the lab ran (see
``LEARNING_RATES`` and docs/decisions.md) and the same for every DECA variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.lab.task import TaskShape
from deca_ray.methods.deca import DecaOptions

ADAM_LR = 3e-3
"""Full-parameter Adam (DECA and its variants, local block-wise Adam, D-Adam, centralised Adam)."""
LORA_LR = 3e-2
"""Adam on LoRA factors (Dec-LoRA, DeCAF)."""
ADAPTER_LR = 3e-2
"""Adam on bottleneck adapters (Dec-Adapter)."""
SGD_LR = 0.3
"""SGD on the full parameters (D-PSGD)."""
LEARNING_RATES = {"adam": ADAM_LR, "lora": LORA_LR, "adapter": ADAPTER_LR, "sgd": SGD_LR}
LR_PILOT_GRID = {"adam": (1e-3, 3e-3, 1e-2, 3e-2), "lora": (3e-3, 1e-2, 3e-2, 1e-1),
                 "adapter": (3e-3, 1e-2, 3e-2, 1e-1), "sgd": (0.1, 0.3, 1.0, 3.0)}
"""The grid the learning rates were read from: one non-DECA method per family (``LR_PILOT``)."""
LR_PILOT_SEED = 100
"""Not a lab seed: the pilot saw none of the lab's data, partitions or graphs."""

TINY_MODEL = {"num_layers": 4, "hidden_size": 32, "num_heads": 4, "num_kv_heads": 4, "intermediate_size": 64}
LORA = {"rank": 4, "alpha": 8.0}
ADAPTER = {"bottleneck": 8}


@dataclass(frozen=True)
class HDefinition:
    """One reading of h (ALGORITHM.md open point 1) as DECA's ``h_signal`` and ``h_sign``."""

    key: str
    label: str
    h_signal: str
    h_sign: str


H_DEFINITIONS = (
    HDefinition("old_minus_new", "x_k − x_new", "update", "old_minus_new"),
    HDefinition("new_minus_old", "x_new − x_k", "update", "new_minus_old"),
    HDefinition("consensus_gap", "x½ − x_new", "consensus_gap", "old_minus_new"),
)
H_SCALES = ("raw", "lr", "unit_norm", "gradient_units", "relative_to_step")
SCALE_LABELS = {"raw": "raw", "lr": "÷ γ", "unit_norm": "unit norm", "gradient_units": "gradient units",
                "relative_to_step": "÷ ‖x_k − x½‖"}
BETAS = ((0.9, 0.999), (0.5, 0.9))


@dataclass(frozen=True)
class LabRun:
    """One setting, run once per seed."""

    name: str
    label: str
    group: str
    """``methods`` (one per method), ``h`` (DECA, h definition × scale × β), ``bma`` (DECA's BMA variants) or
    ``controls`` (DECA settings on W = I: what their BMA rule does with no consensus to measure)."""
    family: str
    """Which learning rate it uses (a key of ``LEARNING_RATES``)."""
    algorithm: dict[str, Any]
    """``algorithm`` of the run's config, learning rate excluded."""
    isolated: bool = False
    """W = I whatever the method (a control: DECA without gossip must lose its advantage)."""


@dataclass(frozen=True)
class LabPreset:
    name: str
    seeds: tuple[int, ...]
    shape: TaskShape
    runs: tuple[LabRun, ...]
    rounds: int = 2
    inner_steps: int = 5
    layers_per_block: int = 1
    batch_size: int = 4
    client_eval_examples: int | None = None
    """Score the clients' own models on this stratified prefix of the held-out set (None: all of it);
    x̄ is always scored on all of it."""
    edge_probability: float = 0.5
    learning_rates: dict[str, float] = field(default_factory=lambda: dict(LEARNING_RATES))
    model: dict[str, int] = field(default_factory=lambda: dict(TINY_MODEL))
    kind: str = "lab"
    """Result files are ``<kind>-<time>.json``."""

    def __post_init__(self) -> None:
        if self.shape.min_per_client < self.batch_size:
            raise ValueError(f"shape.min_per_client={self.shape.min_per_client} must be at least batch_size="
                             f"{self.batch_size}: a client samples batches from its own shard")

    def run(self, name: str) -> LabRun:
        return next(run for run in self.runs if run.name == name)


def variant_name(definition: HDefinition, scale: str, betas: tuple[float, float]) -> str:
    return f"deca:{definition.key}:{scale}:{betas[0]}-{betas[1]}"


def deca_variant(definition: HDefinition, scale: str, betas: tuple[float, float]) -> LabRun:
    label = f"h = {definition.label}, {SCALE_LABELS[scale]}, β = ({betas[0]}, {betas[1]})"
    algorithm = {"type": "deca", "variant": "full", "h_signal": definition.h_signal, "h_sign": definition.h_sign,
                 "h_scale": scale, "bma_beta1": betas[0], "bma_beta2": betas[1]}
    return LabRun(variant_name(definition, scale, betas), label, "h", "adam", algorithm)


LAB_REFERENCE = variant_name(H_DEFINITIONS[0], "unit_norm", BETAS[0])
"""The lab's DECA row (h = x_k − x_new, unit norm, β = (0.9, 0.999)): the library's default when the lab was
measured, kept so the committed lab result and its report still mean the same runs."""


def library_default() -> str:
    """The lab run that is DECA with the library's defaults as they are now."""
    options = DecaOptions()
    definition = next(definition for definition in H_DEFINITIONS
                      if (definition.h_signal, definition.h_sign) == (options.h_signal, options.h_sign))
    return variant_name(definition, options.h_scale, (options.bma_beta1, options.bma_beta2))
_DEFAULT_H = {"h_signal": "update", "h_sign": "old_minus_new", "h_scale": "unit_norm"}


def h_grid() -> tuple[LabRun, ...]:
    return tuple(deca_variant(definition, scale, betas)
                 for definition in H_DEFINITIONS for scale in H_SCALES for betas in BETAS)


def bma_variants() -> tuple[LabRun, ...]:
    return (
        LabRun("deca:without_bma", "w/o BMA (β1 = β2 = 1: block-wise Adam + gossip)", "bma", "adam",
               {"type": "deca", "variant": "without_bma", **_DEFAULT_H}),
        LabRun("deca:trivial_bma", "trivial BMA (moments from h alone; h = x_k − x_new, unit norm)", "bma", "adam",
               {"type": "deca", "variant": "trivial_bma", **_DEFAULT_H, "bma_beta1": 0.9, "bma_beta2": 0.999}),
    )


def isolated_name(name: str) -> str:
    return f"{name}:isolated"


def isolated_controls() -> tuple[LabRun, ...]:
    """h = x_k − x_new at every scale, β = (0.9, 0.999), on W = I: on a graph, h is the local step plus the
    consensus pull; here it is the local step alone, so a gain that survives here does not come from gossip.
    (x½ − x_new is exactly 0 on W = I.) Their gossip-free reference is local block-wise Adam."""
    controls = []
    for scale in H_SCALES:
        run = deca_variant(H_DEFINITIONS[0], scale, BETAS[0])
        controls.append(replace(run, name=isolated_name(run.name), label=f"{run.label}, on W = I", group="controls",
                                isolated=True))
    return tuple(controls)


def other_methods() -> tuple[LabRun, ...]:
    """Every registered method but DECA (whose row is ``LAB_REFERENCE``)."""
    return (
        LabRun("local_block_adam", "local block-wise Adam (no gossip, W = I)", "methods", "adam",
               {"type": "local_block_adam"}),
        LabRun("dec_lora", f"Dec-LoRA (r {LORA['rank']}, q/v)", "methods", "lora", {"type": "dec_lora", "lora": LORA}),
        LabRun("decaf", f"DeCAF (r {LORA['rank']}, q/v)", "methods", "lora", {"type": "decaf", "lora": LORA}),
        LabRun("dec_adapter", f"Dec-Adapter (bottleneck {ADAPTER['bottleneck']})", "methods", "adapter",
               {"type": "dec_adapter", "adapter": ADAPTER}),
        LabRun("dsgd", "D-PSGD (all layers)", "methods", "sgd", {"type": "dsgd"}),
        LabRun("dadam", "D-Adam (all layers)", "methods", "adam", {"type": "dadam"}),
        LabRun("centralized_adam", "centralised Adam (one client, all data, batch × clients)", "methods", "adam",
               {"type": "centralized_adam"}),
    )


FULL = LabPreset(name="full", seeds=(0, 1, 2, 3, 4), shape=TaskShape(), client_eval_examples=120,
                 runs=(*other_methods(), *h_grid(), *bma_variants(), *isolated_controls()))

QUICK = LabPreset(
    name="quick", seeds=(0, 1),
    shape=TaskShape(num_classes=4, train_per_class=24, test_per_class=8, dirichlet_alpha=0.5, min_per_client=4),
    rounds=1, inner_steps=2,
    runs=(*other_methods(), deca_variant(H_DEFINITIONS[0], "unit_norm", BETAS[0]),
          deca_variant(H_DEFINITIONS[2], "lr", BETAS[1]), *bma_variants()),
)
"""Seconds: every method, two h variants and both BMA variants on a smaller task (tests, development)."""


def reduced(preset: LabPreset, names: tuple[str, ...], seeds: tuple[int, ...]) -> LabPreset:
    """``preset`` with only the named runs and seeds (the slow test's lab)."""
    return replace(preset, name=f"{preset.name}-reduced", seeds=seeds, runs=tuple(preset.run(n) for n in names))


def lr_pilot(preset: LabPreset = FULL) -> LabPreset:
    """One non-DECA method per family on each learning rate of ``LR_PILOT_GRID``, on ``LR_PILOT_SEED`` only.

    Each family's rate is read from its own representative (D-Adam for full-parameter Adam,
    Dec-LoRA, Dec-Adapter, D-PSGD), never from DECA, and used for every method of the family.
    """
    representatives = {"adam": preset.run("dadam"), "lora": preset.run("dec_lora"),
                       "adapter": preset.run("dec_adapter"), "sgd": preset.run("dsgd")}
    runs = tuple(
        replace(run, name=f"{run.name}@{lr:g}", label=f"{run.label}, lr {lr:g}", family=f"{family}@{lr:g}")
        for family, run in representatives.items() for lr in LR_PILOT_GRID[family]
    )
    rates = {f"{family}@{lr:g}": lr for family, grid in LR_PILOT_GRID.items() for lr in grid}
    return replace(preset, name=f"{preset.name}-lr-pilot", seeds=(LR_PILOT_SEED,), runs=runs, learning_rates=rates,
                   kind="lab_lr")
