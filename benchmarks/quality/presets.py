"""What ``python -m benchmarks quality`` runs: BENCHMARK.md section Q (suite v2), sized for a 2-core machine.

Every run is the base config plus a few overrides, on every seed of the preset. All methods walk
the same schedule (T = 2 rounds over the top four layers of SmolLM2, one layer per block, R = 5:
40 local steps per client), so each client takes the same number of gradient steps whatever the
method. Each method's learning rate is chosen on the validation split at the grid seed from a
grid of four rates of its family; the ablations are DECA variants at DECA's chosen rate. The
reference DECA is the library's defaults as they were when FULL measured it (h = x_k − x_new, unit
norm; pinned since the defaults changed), and each ablation sets only the options it is about.
``CONFIRM`` (``--confirm``, BENCHMARKS.md section Q-confirm) measures the goal's comparisons again
on fresh seeds at the rates FULL chose, with the defaults FULL's ablations pointed to.

Estimated wall time of ``FULL`` on this project's 2-core machine (other work sharing the cores):
**≈ 6.5 h**, from the v1 suite's median step (4.3 s for 8 clients, Ray, full logits) scaled by the
answer-only head (÷ 1.44) and a cold frozen prefix (× 1.09): ≈ 3.3 s, so ≈ 155 s per run of 40
steps with the local backend's start-up; scoring measured on SmolLM2 here (load ≈ 5): x0's full
pass ≈ 1.0 s per held-out example, a model from layer 26 ≈ 0.15 s per example.

    grid       24 runs × (155 s + x̄ on 600 examples 90 s + 8 clients × 100 examples 120 s) ≈ 2.4 h
    seeds      16 runs × (155 s + x̄ on 500 examples 75 s + clients 120 s)                ≈ 1.6 h
    ablations  30 runs × (155 s + x̄ on 500 examples 75 s)                                ≈ 1.9 h
    x0         3 seeds × 600 examples × 1.0 s (once; cached on disk)                       ≈ 0.5 h

The floor (70 training runs of 40 steps × 8 clients) is ≈ 3 h of training alone, so the 3-hour
aim cannot hold; to shrink it, the suite scores the clients' own models only in the methods' runs
(the ablations compare x̄), on the first 100 test examples, and the validation split only in the grid.
Run it in parts (``--phase``, ``--only``, ``--into``): each result is its own file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Every family's grid is ten times the first v2 suite's (quality-20261206T095851Z), where all four
# methods measured chose their grid's top rate, validation accuracy rising steeply into it: the
# grids stopped below the optimum of a 40-step budget. Shifting every family by the same factor
# keeps the grids equally sized and equally placed, and each one still holds the old top rate.
# A fourth, higher rate for every family followed once DECA and Dec-Adapter chose the top of the
# shifted grids too (docs/decisions.md): equal sizes still, and the measured rates still compare.
ADAM_GRID = (3e-4, 1e-3, 3e-3, 1e-2)
"""Full-parameter Adam: DECA, D-Adam, local block-wise Adam, centralised Adam."""
ADAPTER_GRID = (3e-3, 1e-2, 3e-2, 1e-1)
"""Adam on LoRA factors or bottleneck adapters: Dec-LoRA, DeCAF, Dec-Adapter."""
SGD_GRID = (3e-2, 1e-1, 3e-1, 1.0)
"""SGD on the full region: D-PSGD."""
METHODS, ABLATIONS = "methods", "ablations"
GRID, SEEDS = "grid", "seeds"
PHASES = (GRID, SEEDS, ABLATIONS)
"""In order: the methods' lr grid at the grid seed, the methods' other seeds at the chosen lr, the ablations."""


@dataclass(frozen=True)
class QualityRun:
    name: str
    """File names of its results start with it (``<name>-seed<seed>-lr<lr>.json``)."""
    table: str
    """``methods`` (its lr is chosen on the grid) or ``ablations`` (a DECA variant at the reference's lr)."""
    label: str
    family: str | None
    """The key of ``QualityPreset.grids`` its lr comes from; None for an ablation."""
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def scores_clients(self) -> bool:
        """Each client's own model is scored only in the methods' runs (8 models: as much as x̄ on 800 examples)."""
        return self.table == METHODS


@dataclass(frozen=True)
class QualityPreset:
    name: str
    base: dict[str, Any]
    runs: tuple[QualityRun, ...]
    grids: dict[str, tuple[float, ...]]
    seeds: tuple[int, ...] = (0, 1, 2)
    grid_seed: int = 0
    validation_size: int = 100
    """The first ``validation_size`` held-out examples (stratified order) choose learning rates; the rest is the test split."""
    client_examples: int = 100
    """Each client's own model is scored on this prefix of the test split (stratified too)."""
    score_from_layer: int = 26
    """Models are scored from this decoder layer on (hidden states below it come from x0): the lowest layer any
    run trains. A model that trains below it is refused."""
    reference: str = "deca"
    bootstrap_replicates: int = 2000
    kind: str = "quality"
    """Its suites are ``<kind>-<time>/`` and render into BENCHMARKS.md's ``<kind>`` section: a confirmation on
    fresh seeds (``confirm``) keeps the suite that chose its rates rendered beside it."""

    def __post_init__(self) -> None:
        sizes = {len(grid) for grid in self.grids.values()}
        if len(sizes) != 1:
            raise ValueError(f"every method family needs a grid of the same size, not {self.grids}")
        families = {run.family for run in self.runs if run.table == METHODS}
        if not families <= set(self.grids) or self.reference not in {run.name for run in self.runs}:
            raise ValueError(f"runs name families {families} or a reference {self.reference!r} the preset lacks")
        if self.grid_seed not in self.seeds:
            raise ValueError(f"grid_seed {self.grid_seed} must be one of the seeds {self.seeds}: its grid run at the "
                             "chosen lr is that seed's run")

    @property
    def test_size(self) -> int:
        return self.base["data"]["test_size"] - self.validation_size

    def run(self, name: str) -> QualityRun:
        return next(run for run in self.runs if run.name == name)

    def design(self) -> dict[str, Any]:
        """What the report needs to read a suite (kept in its ``suite.json``, so a later preset cannot change it)."""
        return {"grids": {family: list(grid) for family, grid in self.grids.items()}, "seeds": list(self.seeds),
                "grid_seed": self.grid_seed, "validation_size": self.validation_size, "test_size": self.test_size,
                "client_examples": self.client_examples, "score_from_layer": self.score_from_layer,
                "reference": self.reference, "bootstrap_replicates": self.bootstrap_replicates, "kind": self.kind,
                "runs": [{"name": run.name, "table": run.table, "label": run.label, "family": run.family}
                         for run in self.runs]}


def preset_of(name: str, design: dict[str, Any]) -> QualityPreset:
    """The preset a suite was measured with, from its recorded ``design`` (runs without their overrides)."""
    runs = tuple(QualityRun(run["name"], run["table"], run["label"], run["family"]) for run in design["runs"])
    return QualityPreset(
        name=name, base={"data": {"test_size": design["validation_size"] + design["test_size"]}}, runs=runs,
        grids={family: tuple(grid) for family, grid in design["grids"].items()}, seeds=tuple(design["seeds"]),
        grid_seed=design["grid_seed"], validation_size=design["validation_size"],
        client_examples=design["client_examples"], score_from_layer=design["score_from_layer"],
        reference=design["reference"], bootstrap_replicates=design["bootstrap_replicates"],
        kind=design.get("kind", "quality"))


def _method(name: str, label: str, family: str, **overrides: Any) -> QualityRun:
    algorithm = {"type": name} | overrides.pop("algorithm", {})
    return QualityRun(name, METHODS, label, family, {"algorithm": algorithm} | overrides)


def _variant(name: str, label: str, **overrides: Any) -> QualityRun:
    algorithm = {"type": "deca"} | overrides.pop("algorithm", {})
    return QualityRun(f"ablation-{name}", ABLATIONS, label, None, {"algorithm": algorithm} | overrides)


_CLIENTS = 8
_BATCH = 2
_TOP_FOUR = [29, 28, 27, 26]
"""SmolLM2's 30 layers, one per block: the top four, top down (the v1 suite's order; BAdam's default is descending)."""


_TUNED_DEFAULTS = {"h_signal": "update", "h_scale": "unit_norm"}
"""DECA's defaults when the FULL suite measured its reference (h = x_k − x_new, unit norm); pinned so the
preset keeps meaning what its suite measured. The defaults changed after it (docs/decisions.md)."""


def _methods(centralised_batch: int) -> tuple[QualityRun, ...]:
    return (
        _method("deca", "DECA (the defaults then: h = x_k − x_new, unit norm)", "adam", algorithm=_TUNED_DEFAULTS),
        _method("dec_lora", "Dec-LoRA", "adapter"),
        _method("decaf", "DeCAF", "adapter"),
        _method("dec_adapter", "Dec-Adapter", "adapter"),
        _method("dsgd", "D-PSGD (full region)", "sgd"),
        _method("dadam", "D-Adam (full region)", "adam"),
        _method("local_block_adam", "local block-wise Adam (no gossip)", "adam"),
        _method("centralized_adam", "centralised Adam (all data, batch × clients)", "adam",
                data={"batch_size": centralised_batch}),
    )


def _ablations(ascending: list[int], two_layer_blocks: dict[str, Any], two_layer_steps: int) -> tuple[QualityRun, ...]:
    """FULL's DECA variants, each on its reference's pinned defaults, so it differs only in what it names."""

    def _ablation(name: str, label: str, algorithm: dict[str, Any] | None = None, **overrides: Any) -> QualityRun:
        return _variant(name, label, algorithm=_TUNED_DEFAULTS | (algorithm or {}), **overrides)

    update, gap = {"h_signal": "update", "h_sign": "old_minus_new"}, {"h_signal": "consensus_gap", "h_sign": "old_minus_new"}
    return (
        _ablation("h_update_raw", "h = x_k − x_new, raw", algorithm=update | {"h_scale": "raw"}),
        _ablation("h_update_gradient_units", "h = x_k − x_new, gradient units",
                  algorithm=update | {"h_scale": "gradient_units"}),
        _ablation("h_gap_gradient_units", "h = x½ − x_new, gradient units", algorithm=gap | {"h_scale": "gradient_units"}),
        _ablation("without_bma", "w/o BMA (β1 = β2 = 1)", algorithm={"variant": "without_bma"}),
        _ablation("trivial_bma", "trivial BMA", algorithm={"variant": "trivial_bma"}),
        _ablation("persistent_moments", "moments kept per block across rounds",
                  algorithm={"moment_lifetime": "persistent"}),
        _ablation("ascending_blocks", "blocks visited bottom up", algorithm={"blocks": {"fixed_order": ascending}}),
        _ablation("two_layer_blocks", "2 layers per block (same layers, R doubled)",
                  algorithm={"inner_steps": two_layer_steps, "blocks": two_layer_blocks}),
        _ablation("ring", "ring graph", topology={"type": "ring"}),
        _ablation("bipartite", "complete bipartite graph", topology={"type": "bipartite"}),
    )


FULL = QualityPreset(
    name="full",
    base={
        "name": "quality",
        "num_clients": _CLIENTS,
        "model": {"name": "smollm2-135m"},
        "data": {"source": "bbc_news", "test_size": 600, "body_words": 32, "max_tokens": 80, "batch_size": _BATCH},
        "partition": {"type": "dirichlet", "alpha": 0.25},
        "topology": {"type": "erdos_renyi", "edge_probability": 0.5, "weights": "metropolis_hastings"},
        "algorithm": {"rounds": 2, "inner_steps": 5,
                      "blocks": {"layers_per_block": 1, "order": "fixed", "fixed_order": _TOP_FOUR}},
        # the suite scores the final models itself, with per-example predictions (x0 once per seed)
        "evaluation": {"before_training": False, "after_training": False},
        # in-process clients: the same trajectory as Ray actors (tested), without 8 actor start-ups per run
        "runtime": {"backend": "local"},
        "tracking": {"experiment": "deca-ray-quality"},
    },
    runs=(*_methods(_BATCH * _CLIENTS),
          *_ablations([26, 27, 28, 29], {"layers_per_block": 2, "fixed_order": [14, 13]}, 10)),
    grids={"adam": ADAM_GRID, "adapter": ADAPTER_GRID, "sgd": SGD_GRID},
)

CONFIRMED_RATES = {"deca": 3e-3, "dec_lora": 1e-2, "decaf": 3e-2, "dec_adapter": 3e-2}
"""The rates the FULL suite (benchmarks/results/quality-20261206T122014Z) chose on validation at seed 0."""

CONFIRM = QualityPreset(
    name="confirm",
    kind="confirm",
    base=FULL.base,
    runs=(
        _method("deca", "DECA (library defaults: h = x½ − x_new, gradient units)", "deca"),
        _method("dec_lora", "Dec-LoRA", "dec_lora"),
        _method("decaf", "DeCAF", "decaf"),
        _method("dec_adapter", "Dec-Adapter", "dec_adapter"),
        _variant("without_bma", "w/o BMA (β1 = β2 = 1)", algorithm={"variant": "without_bma"}),
        _variant("h_update_unit_norm", "h = x_k − x_new, unit norm (the defaults section Q measured)",
                  algorithm=_TUNED_DEFAULTS),
    ),
    grids={name: (lr,) for name, lr in CONFIRMED_RATES.items()},
    seeds=(3, 4, 5),
    grid_seed=3,
)
"""The goal's comparisons again on seeds no choice has seen, at the FULL suite's chosen rates (one rate per
method, so nothing is chosen here): DECA with the defaults that suite pointed to, its w/o-BMA ablation and the
old defaults, against the three PEFT baselines. 18 runs: 42 min of wall time here (its first suite.json), x0
included (≈ 1.5 min per new seed)."""

QUICK = QualityPreset(
    name="quick",
    base={
        "name": "quality-quick",
        "num_clients": 3,
        "model": {"name": "tiny-llama"},
        "data": {"max_train_examples": 60, "test_size": 16, "body_words": 20, "max_tokens": 48, "batch_size": 2},
        "topology": {"type": "ring"},
        "algorithm": {"rounds": 2, "inner_steps": 1,
                      "blocks": {"layers_per_block": 1, "order": "fixed", "fixed_order": [3, 2]}},
        "evaluation": {"before_training": False, "after_training": False},
        "runtime": {"backend": "local"},
        "tracking": {"experiment": "deca-ray-quality-quick", "system_metrics": False},
    },
    runs=(_method("deca", "DECA", "adam"), _method("decaf", "DeCAF", "adapter", algorithm={"lora": {"rank": 2}}),
          _variant("without_bma", "w/o BMA", algorithm={"variant": "without_bma"}),
          _variant("ascending_blocks", "blocks bottom up", algorithm={"blocks": {"fixed_order": [2, 3]}})),
    grids={"adam": (1e-3, 1e-2), "adapter": (1e-3, 1e-2)},
    seeds=(0, 1), validation_size=6, client_examples=5, score_from_layer=2, bootstrap_replicates=200,
)
"""The whole pipeline in about a minute: tiny LLaMA, 3 clients, 4 steps, grids of two rates, two seeds."""
