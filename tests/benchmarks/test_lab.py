"""The algorithm lab's pieces: the task's statistics, the grid's coverage, one tiny run, the report."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks.__main__ import parser
from benchmarks.lab import presets
from benchmarks.lab.presets import (
    BETAS,
    FULL,
    H_DEFINITIONS,
    LAB_REFERENCE,
    LabPreset,
    library_default,
    lr_pilot,
    reduced,
)
from benchmarks.lab.report import Estimate, paired, render_lab, render_newest_lab, verdict
from benchmarks.lab.run import lab_config, lab_topology, run_one
from benchmarks.lab.task import (
    END,
    START,
    TaskShape,
    bayes_accuracy,
    class_token,
    make_task,
    task_rng,
    topics,
)
from benchmarks.markdown import HEADER
from benchmarks.results import write_result
from deca_ray.algorithm import choices
from deca_ray.methods import method_names
from deca_ray.methods.deca import DecaOptions

SHAPE = TaskShape()


# ---------------------------------------------------------------------- the task


@pytest.fixture(scope="module")
def task():
    return make_task(SHAPE, seed=0)


def test_held_out_set_is_large_stratified_and_every_prefix_is_too(task):
    labels = [example.label for example in task.test]
    assert len(labels) >= 400
    assert set(Counter(labels).values()) == {SHAPE.test_per_class}
    assert labels[: SHAPE.num_classes] == list(range(SHAPE.num_classes))  # round-robin order
    assert set(Counter(labels[:120]).values()) == {20}


def test_every_example_is_start_content_then_its_class_token_and_end(task):
    content = set(SHAPE.content_tokens.tolist())
    for example in [*task.test, *task.client_shards[0]]:
        prompt, answer = example.input_ids[: example.num_prompt_tokens], example.input_ids[example.num_prompt_tokens :]
        assert prompt[0] == START and set(prompt[1:]) <= content
        assert SHAPE.min_prompt_tokens <= len(prompt) - 1 <= SHAPE.max_prompt_tokens
        assert answer == (class_token(example.label), END)
    assert task.label_answer_ids == [(class_token(label),) for label in range(SHAPE.num_classes)]


def test_training_pool_is_split_once_over_8_clients_and_skewed(task):
    report = task.partition_report
    counts = np.asarray(report["counts"])  # (clients, classes)
    assert len(task.client_shards) == 8
    assert counts.sum() == SHAPE.num_classes * SHAPE.train_per_class
    assert (counts.sum(axis=0) == SHAPE.train_per_class).all()  # every example lands on exactly one client
    assert min(report["sizes"]) >= SHAPE.min_per_client
    shares = counts / counts.sum(axis=1, keepdims=True)
    assert shares.max(axis=1).mean() > 0.55  # Dirichlet α = 0.2: most of a client's data is one class
    assert (shares >= 0.1).sum(axis=1).mean() < 3  # of 6 classes, a client holds a real share of 2-3


def test_the_class_is_in_the_token_statistics_and_only_there():
    """The Bayes classifier that knows the topics is near perfect; with no signal it is at chance."""
    class_topics = topics(SHAPE, task_rng(0))
    assert bayes_accuracy(SHAPE, class_topics, make_task(SHAPE, 0).test) > 0.95
    noise_only = dataclasses.replace(SHAPE, signal=0.0)
    chance = 1 / SHAPE.num_classes
    assert abs(bayes_accuracy(noise_only, class_topics, make_task(noise_only, 0).test) - chance) < 0.08


def test_a_seed_fixes_the_task_and_another_seed_changes_it():
    first, again, other = make_task(SHAPE, 3), make_task(SHAPE, 3), make_task(SHAPE, 4)
    assert first.test == again.test and first.client_shards == again.client_shards
    assert first.test != other.test and first.partition_report != other.partition_report


# ---------------------------------------------------------------------- the grid


def test_the_full_grid_runs_every_method_and_every_deca_variant():
    types = {run.algorithm["type"] for run in FULL.runs}
    assert types == set(method_names())
    definitions = {(definition.h_signal, definition.h_sign) for definition in H_DEFINITIONS}
    assert {signal for signal, _ in definitions} == set(choices.H_SIGNALS)
    assert {sign for _, sign in definitions} == set(choices.H_SIGNS)
    assert set(presets.H_SCALES) == set(choices.H_SCALES)
    h_runs = [run.algorithm for run in FULL.runs if run.group == "h"]
    expected = {(d.h_signal, d.h_sign, scale, betas)
                for d, scale, betas in itertools.product(H_DEFINITIONS, choices.H_SCALES, BETAS)}
    found = {(a["h_signal"], a["h_sign"], a["h_scale"], (a["bma_beta1"], a["bma_beta2"])) for a in h_runs}
    assert found == expected and len(h_runs) == len(expected) == 30
    assert {run.algorithm["variant"] for run in FULL.runs if run.group == "bma"} == set(choices.VARIANTS) - {"full"}
    assert len({run.name for run in FULL.runs}) == len(FULL.runs)
    controls = [run for run in FULL.runs if run.isolated]
    assert {run.group for run in controls} == {"controls"}
    assert {run.algorithm["h_scale"] for run in controls} == set(choices.H_SCALES)
    for control in controls:  # each control is a graph setting of the grid, moved to W = I
        assert FULL.run(control.name.removesuffix(":isolated")).algorithm == control.algorithm


def test_the_full_preset_is_powered_and_fair():
    assert len(FULL.seeds) >= 5 and FULL.rounds >= 2
    assert FULL.model["num_layers"] // FULL.layers_per_block >= 4
    assert {run.family for run in FULL.runs if run.algorithm["type"] == "deca"} == {"adam"}  # one lr for DECA
    configs = [lab_config(FULL, run, seed=0) for run in FULL.runs]
    schedules = {(c.algorithm.rounds, c.algorithm.inner_steps, c.algorithm.blocks.layers_per_block) for c in configs}
    assert len(schedules) == 1  # the same number of local steps for every method
    assert {c.seed for c in configs} == {0}
    centralised = lab_config(FULL, FULL.run("centralized_adam"), seed=0)
    assert (centralised.num_clients, centralised.data.batch_size) == (1, FULL.batch_size * 8)


def test_the_library_default_is_a_lab_run_with_exactly_the_library_defaults():
    algorithm = FULL.run(library_default()).algorithm
    defaults = DecaOptions().model_dump()
    assert all(algorithm[key] == defaults[key] for key in algorithm if key != "type")
    assert {"h_signal", "h_sign", "h_scale", "bma_beta1", "bma_beta2"} <= set(algorithm)


def test_the_graph_is_the_seeds_and_only_non_gossiping_runs_are_isolated():
    deca, local = FULL.run(LAB_REFERENCE), FULL.run("local_block_adam")
    graph = lab_topology(FULL, deca, seed=1, num_clients=8, gossips=True)
    assert graph.kind == "erdos_renyi" and graph.edges() == lab_topology(FULL, deca, 1, 8, True).edges()
    assert lab_topology(FULL, local, seed=1, num_clients=8, gossips=False).edges() == []
    control = dataclasses.replace(deca, isolated=True)
    assert lab_topology(FULL, control, seed=1, num_clients=8, gossips=True).edges() == []


def test_learning_rates_come_from_a_pilot_without_deca_on_another_seed():
    pilot = lr_pilot()
    assert not {run.algorithm["type"] for run in pilot.runs} & {"deca", "local_block_adam"}
    assert not set(pilot.seeds) & set(FULL.seeds)
    assert pilot.kind != FULL.kind and not pilot.kind.startswith(f"{FULL.kind}-")  # never read as a lab result


# ---------------------------------------------------------------------- one tiny run

TINY = LabPreset(
    name="tiny", seeds=(0,), rounds=1, inner_steps=1,
    shape=TaskShape(num_classes=3, num_clients=4, train_per_class=8, test_per_class=4, dirichlet_alpha=1.0,
                    min_per_client=4, vocab_size=24, min_prompt_tokens=4, max_prompt_tokens=6),
    runs=(FULL.run(LAB_REFERENCE), FULL.run("centralized_adam")), client_eval_examples=6,
)


@pytest.mark.parametrize("name", [LAB_REFERENCE, "centralized_adam"])
def test_one_run_trains_every_step_and_scores_the_average_and_each_client(name):
    outcome = run_one(TINY, TINY.run(name), seed=0)
    clients = 1 if name == "centralized_adam" else 4
    assert outcome["steps_per_client"] == 4  # 1 round × 4 blocks × 1 inner step
    assert len(outcome["clients_accuracy"]) == clients
    assert 0 <= outcome["average"]["accuracy"] <= 1 and 0 <= outcome["clients_mean"]["macro_f1"] <= 1


# ---------------------------------------------------------------------- the report

RUNS = [
    {"name": LAB_REFERENCE, "label": "DECA default", "group": "h", "family": "adam", "lr": 3e-3},
    {"name": "deca:consensus_gap:unit_norm:0.9-0.999", "label": "gap unit", "group": "h", "family": "adam", "lr": 3e-3},
    {"name": "deca:without_bma", "label": "no BMA", "group": "bma", "family": "adam", "lr": 3e-3},
    {"name": "local_block_adam", "label": "local", "group": "methods", "family": "adam", "lr": 3e-3},
    {"name": f"{LAB_REFERENCE}:isolated", "label": "DECA default on W = I", "group": "controls", "family": "adam",
     "lr": 3e-3},
]
ACCURACY = {LAB_REFERENCE: [0.5, 0.7, 0.6], "deca:consensus_gap:unit_norm:0.9-0.999": [0.8, 0.9, 0.85],
            "deca:without_bma": [0.6, 0.6, 0.6], "local_block_adam": [0.3, 0.31, 0.32],
            f"{LAB_REFERENCE}:isolated": [0.2, 0.21, 0.22]}


def _outcome(run: str, seed: int, accuracy: float) -> dict:
    scores = {"accuracy": accuracy, "macro_f1": accuracy / 2}
    return {"run": run, "seed": seed, "average": scores, "clients_mean": scores, "final_loss": 3.0,
            "train_s": 1.0, "eval_s": 0.5}


RESULT = {
    "metadata": {"git": {"commit": "abc123", "dirty": False}, "date_utc": "2026-01-01T00:00:00+00:00",
                 "machine": {"cpu_model": "Test CPU", "cpu_cores": 2, "gpu": None}},
    "preset": "full",
    "setting": {"task": dataclasses.asdict(SHAPE) | {"num_content_tokens": SHAPE.num_content_tokens},
                "model": {"name": "tiny-llama", "num_layers": 4, "hidden_size": 32},
                "schedule": {"rounds": 2, "inner_steps": 5, "layers_per_block": 1, "num_blocks": 4, "batch_size": 4},
                "topology": {"type": "erdos_renyi", "edge_probability": 0.5, "weights": "metropolis_hastings"},
                "learning_rates": {"adam": 3e-3}, "seeds": [0, 1, 2], "client_eval_examples": 201},
    "runs": RUNS,
    "before": {str(seed): {"accuracy": 0.2, "macro_f1": 0.1} for seed in range(3)},
    "task_statistics": {str(seed): {"bayes_accuracy": 1.0, "topic_distance": 0.7} for seed in range(3)},
    "results": [_outcome(run, seed, value) for run, values in ACCURACY.items() for seed, value in enumerate(values)],
    "workers": 2, "wall_time_s": 600.0, "load_average_1min": {"start": 1.0, "end": 2.0},
}


def test_estimates_are_mean_and_standard_error_and_differences_are_paired():
    estimate = Estimate.of([0.5, 0.7, 0.6])
    assert (estimate.mean, estimate.se, estimate.n) == (pytest.approx(0.6), pytest.approx(0.1 / 3**0.5), 3)
    difference = paired(RESULT, LAB_REFERENCE, "local_block_adam")
    per_seed = np.subtract(ACCURACY[LAB_REFERENCE], ACCURACY["local_block_adam"])  # 0.2, 0.39, 0.28
    assert difference.mean == pytest.approx(0.29)
    assert difference.se == pytest.approx(np.std(per_seed, ddof=1) / 3**0.5)  # not the two SEs combined
    assert verdict(difference) == "ahead"
    assert verdict(paired(RESULT, LAB_REFERENCE, "deca:without_bma")) == "tie"
    assert verdict(paired(RESULT, "local_block_adam", LAB_REFERENCE)) == "behind"
    assert verdict(paired(RESULT, "deca:without_bma", "deca:without_bma")) == "tie"  # SE 0, difference 0


def test_the_report_gives_every_setting_mean_and_se_and_says_who_won():
    text = render_lab(RESULT, Path("benchmarks/results/lab-x.json"))
    assert text.startswith("## Algorithm lab")
    assert "wall time **10.0 min** for 15 runs (5 settings × 3 seeds [0, 1, 2]) in 2 worker process(es)" in text
    assert "| local | 0.003 | 0.310 ± 0.006 |" in text  # methods table: mean ± SE over seeds
    assert "| x½ − x_new | unit norm | (0.9, 0.999) | 0.850 ± 0.029 |" in text
    assert "+0.250 ± 0.029 (ahead)" in text  # gap unit − no BMA, paired
    assert "reference DECA − local block-wise Adam (no gossip): +29.0 ± 5.5 points (+5.3 SE) → **ahead**" in text
    assert "best DECA setting: **gap unit**" in text
    assert "1 ahead: gap unit; 1 tie; 0 behind" in text
    assert "the ceiling): 1.000 ± 0.000" in text
    # controls: graph − W = I, and W = I − local block-wise Adam; w/o BMA's W = I twin is local block-wise Adam
    assert "| DECA default | 0.600 ± 0.058 | 0.210 ± 0.006 | +0.390 ± 0.055 (ahead) | -0.100 ± 0.000 (behind) |" in text
    assert "| no BMA | 0.600 ± 0.000 | 0.310 ± 0.006 | +0.290 ± 0.006 (ahead) | — |" in text


def test_the_report_says_where_the_library_default_stands_beside_the_lab_reference():
    default = library_default()
    assert default != LAB_REFERENCE  # the defaults changed after the lab was measured
    runs = [*RUNS, {"name": default, "label": "gap gradient", "group": "h", "family": "adam", "lr": 3e-3}]
    outcomes = [_outcome(default, seed, value) for seed, value in enumerate([0.4, 0.42, 0.41])]
    text = render_lab(RESULT | {"runs": runs, "results": [*RESULT["results"], *outcomes]}, Path("lab-x.json"))
    assert "- the library's default DECA now (gap gradient; chosen by the quality suite" in text
    assert "  - − local block-wise Adam (no gossip): +10.0 ± 0.6 points (+17.3 SE) → **ahead**" in text
    assert "  - − DECA without BMA: -19.0 ± 0.6 points" in text and "  - − the lab's reference DECA: " in text
    assert "library's default DECA now" not in render_lab(RESULT, Path("lab-x.json"))  # not measured: not said


def test_render_newest_lab_replaces_only_the_lab_section(tmp_path):
    results, markdown = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    markdown.write_text(HEADER + "\n<!-- system:begin -->\nkeep me\n<!-- system:end -->\n")
    write_result(RESULT, results, kind="lab")
    write_result({"not": "a lab result"}, results, kind="lab_lr")  # the pilot is never rendered
    render_newest_lab(results, markdown)
    render_newest_lab(results, markdown)  # idempotent
    text = markdown.read_text()
    assert "keep me" in text and text.count("<!-- lab:begin -->") == 1 and "## Algorithm lab" in text


def test_the_command_line_knows_the_lab():
    args = parser().parse_args(["lab", "--quick", "--workers", "1", "--render-only"])
    assert args.quick and args.workers == 1 and args.render_only and callable(args.handler)


def test_a_preset_whose_clients_could_hold_less_than_a_batch_is_refused():
    with pytest.raises(ValueError, match="min_per_client=2 must be at least batch_size=4"):
        dataclasses.replace(FULL, shape=dataclasses.replace(SHAPE, min_per_client=2))


def test_reduced_keeps_the_named_runs_and_seeds():
    small = reduced(FULL, (LAB_REFERENCE, "local_block_adam"), (0, 1))
    assert [run.name for run in small.runs] == [LAB_REFERENCE, "local_block_adam"] and small.seeds == (0, 1)
