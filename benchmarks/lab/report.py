"""Render the newest lab result into BENCHMARKS.md between ``<!-- lab:begin -->`` / ``<!-- lab:end -->``.

Every number is a mean ± standard error over the result's seeds (SE = sample std / √n), or a
paired difference between two settings on the same seeds (same data, partition, graph, x0 and
batches), mean ± SE of the per-seed differences. A difference within 2 SE is called a tie.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks.lab.presets import (
    BETAS,
    H_DEFINITIONS,
    H_SCALES,
    LAB_REFERENCE,
    SCALE_LABELS,
    library_default,
    variant_name,
)
from benchmarks.markdown import update_markdown
from benchmarks.results import newest_result
from benchmarks.statistics import Estimate

SIGNIFICANT_SE = 2.0
"""A paired difference counts as a win or a loss only beyond this many standard errors."""
WITHOUT_BMA = "deca:without_bma"
LOCAL = "local_block_adam"
MISSING = "—"


def render_newest_lab(results_dir: Path, markdown: Path) -> Path:
    path = newest_result(results_dir, kind="lab")
    update_markdown(markdown, render_lab(json.loads(path.read_text()), path), name="lab")
    return path


def values(result: dict[str, Any], run: str, metric: str) -> dict[int, float]:
    """Per seed, ``metric`` (``average/accuracy``, ``clients_mean/macro_f1``, ``final_loss``...) of ``run``."""
    out = {}
    for outcome in result["results"]:
        if outcome["run"] == run:
            entry: Any = outcome
            for key in metric.split("/"):
                entry = entry[key]
            out[outcome["seed"]] = float(entry)
    return out


def estimate(result: dict[str, Any], run: str, metric: str = "average/accuracy") -> Estimate | None:
    per_seed = values(result, run, metric)
    return Estimate.of(list(per_seed.values())) if per_seed else None


def paired(result: dict[str, Any], run: str, reference: str, metric: str = "average/accuracy") -> Estimate | None:
    """``run`` − ``reference`` seed by seed (seeds both have)."""
    ours, theirs = values(result, run, metric), values(result, reference, metric)
    seeds = sorted(set(ours) & set(theirs))
    return Estimate.of([ours[seed] - theirs[seed] for seed in seeds]) if seeds else None


def verdict(difference: Estimate | None) -> str:
    if difference is None:
        return "not measured"
    if abs(difference.z) <= SIGNIFICANT_SE:
        return "tie"
    return "ahead" if difference.mean > 0 else "behind"


def render_lab(result: dict[str, Any], source: Path) -> str:
    runs = {run["name"]: run for run in result["runs"]}
    lines = ["## Algorithm lab (synthetic non-IID task)", "", *_provenance(result, source), ""]
    lines += _methods_table(result, runs)
    lines += ["", *_variants_table(result, runs)]
    if any(run["group"] == "controls" for run in runs.values()):
        lines += ["", *_controls_table(result, runs)]
    lines += ["", "Findings (average-model accuracy; paired over seeds; ties within "
              f"{SIGNIFICANT_SE:g} SE):", "", *_findings(result, runs)]
    return "\n".join(lines) + "\n"


def _provenance(result: dict[str, Any], source: Path) -> list[str]:
    meta, setting = result["metadata"], result["setting"]
    git, machine = meta["git"], meta["machine"]
    task, model, schedule, topology = setting["task"], setting["model"], setting["schedule"], setting["topology"]
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    steps = schedule["rounds"] * schedule["num_blocks"] * schedule["inner_steps"]
    rates = ", ".join(f"{family} {rate:g}" for family, rate in setting["learning_rates"].items())
    before = Estimate.of([scores["accuracy"] for scores in result["before"].values()])
    num_train = task["train_per_class"] * task["num_classes"]
    num_test = task["test_per_class"] * task["num_classes"]
    return [
        f"- commit `{git.get('commit') or 'unknown'}`{dirty}; measured {meta['date_utc']}; preset `{result['preset']}`;"
        f" result file: `{source.as_posix()}`",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, {machine.get('gpu') or 'no GPU'}; "
        f"wall time **{result['wall_time_s'] / 60:.1f} min** for {len(result['results'])} runs "
        f"({len(result['runs'])} settings × {len(setting['seeds'])} seeds {setting['seeds']}) in "
        f"{result['workers']} worker process(es); 1-min load average {_load(result)} (other work shares the cores); "
        f"{_cpu(result)}",
        f"- task: {task['num_classes']} classes, vocabulary {task['vocab_size']}; a prompt is "
        f"{task['min_prompt_tokens']}–{task['max_prompt_tokens']} tokens, each from its class's topic "
        f"(Dir({task['topic_concentration']}) over {task['num_content_tokens']} content tokens) with probability "
        f"{task['signal']}, else uniform; answer = class token + end token; {num_train} training examples "
        f"Dirichlet-split over classes (α = {task['dirichlet_alpha']}) across {task['num_clients']} clients; "
        f"{num_test} held-out examples (stratified); all of it drawn anew per seed; {_ceiling(result)}",
        f"- model: {model['name']}, {model['num_layers']} layers, hidden {model['hidden_size']}, random init; "
        f"{schedule['layers_per_block']} layer per block ({schedule['num_blocks']} blocks), T = {schedule['rounds']} "
        f"rounds × R = {schedule['inner_steps']} inner steps = {steps} local steps per client for every method, "
        f"batch {schedule['batch_size']}; {topology['type']} graph (p = {topology['edge_probability']}, "
        f"{topology['weights']} weights), drawn per seed",
        f"- learning rates, one per family, fixed before the lab (read from an lr pilot of non-DECA methods on "
        f"another seed, docs/decisions.md): {rates}",
        f"- scores: label log-likelihood on the held-out set; x̄ = network-average model (all {num_test} held-out "
        f"examples), clients = mean of the clients' own models ({_client_examples(setting, num_test)}); "
        f"before training (x0): accuracy {before.text()}; chance 1/{task['num_classes']} = "
        f"{1 / task['num_classes']:.3f}",
    ]


def _methods_table(result: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[str]:
    names = [LAB_REFERENCE, *(name for name, run in runs.items() if run["group"] == "methods")]
    lines = [
        "| method | lr | accuracy (x̄) | macro-F1 (x̄) | accuracy (clients) | macro-F1 (clients) | "
        "Δ accuracy (x̄) vs DECA | final train loss | s per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        if name not in runs:
            continue
        label = "DECA (the lab's reference: h = x_k − x_new, unit norm, β = (0.9, 0.999))" if name == LAB_REFERENCE \
            else runs[name]["label"]
        delta = MISSING if name == LAB_REFERENCE else _text(paired(result, name, LAB_REFERENCE), signed=True)
        lines.append(f"| {label} | {runs[name]['lr']:g} | {_scores(result, name)} | {delta} | "
                     f"{_text(estimate(result, name, 'final_loss'))} | {_seconds(result, name)} |")
    return lines


def _variants_table(result: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| DECA: h | scale | β | accuracy (x̄) | macro-F1 (x̄) | accuracy (clients) | macro-F1 (clients) | "
        "Δ accuracy (x̄) vs w/o BMA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for definition in H_DEFINITIONS:
        for scale in H_SCALES:
            for betas in BETAS:
                name = variant_name(definition, scale, betas)
                if name in runs:
                    lines.append(f"| {definition.label} | {SCALE_LABELS[scale]} | ({betas[0]}, {betas[1]}) | "
                                 f"{_scores(result, name)} | {_delta_vs_without(result, name)} |")
    for name, run in runs.items():
        if run["group"] == "bma":
            lines.append(f"| {run['label']} | | | {_scores(result, name)} | {_delta_vs_without(result, name)} |")
    return lines


def _controls_table(result: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[str]:
    """Each control beside the same setting on the graph: what gossip adds, and what BMA does with no gossip."""
    lines = [
        "Controls: the same DECA settings on W = I (no edges: h is the local step alone, no consensus signal)",
        "",
        "| DECA setting | accuracy (x̄), graph | accuracy (x̄), W = I | Δ graph − W = I (gossip's share) | "
        "Δ W = I − local block-wise Adam (BMA without gossip) |",
        "|---|---|---|---|---|",
    ]
    pairs = [(name.removesuffix(":isolated"), name) for name, run in runs.items() if run["group"] == "controls"]
    if WITHOUT_BMA in runs and LOCAL in runs:
        pairs.append((WITHOUT_BMA, LOCAL))  # local block-wise Adam is w/o BMA on W = I
    for on_graph, isolated in pairs:
        label = runs[on_graph]["label"] if on_graph in runs else on_graph
        local = MISSING if isolated == LOCAL else _verdict_text(paired(result, isolated, LOCAL))
        lines.append(f"| {label} | {_text(estimate(result, on_graph))} | {_text(estimate(result, isolated))} | "
                     f"{_verdict_text(paired(result, on_graph, isolated))} | {local} |")
    return lines


def _findings(result: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for reference, what in ((LOCAL, "local block-wise Adam (no gossip)"), (WITHOUT_BMA, "DECA without BMA")):
        difference = paired(result, LAB_REFERENCE, reference)
        if difference is not None:
            lines.append(f"- reference DECA − {what}: {_points(difference)} → **{verdict(difference)}**")
    lines += _library_default(result, runs)
    settings = [name for name, run in runs.items() if run["group"] in ("h", "bma")]
    ranked = sorted(settings, key=lambda name: -_mean(result, name))
    if ranked:
        best = ranked[0]
        lines.append(f"- best DECA setting: **{runs[best]['label']}**, accuracy {_text(estimate(result, best))}")
        for what, other in (("the runner-up, ", ranked[1] if len(ranked) > 1 else None), ("", WITHOUT_BMA),
                            ("the reference, ", LAB_REFERENCE)):
            if other is not None and other != best and other in runs:
                lines.append(f"  - over {what}{runs[other]['label']}: {_points(paired(result, best, other))}")
    variants = [name for name in settings if name != WITHOUT_BMA]
    if WITHOUT_BMA in runs:
        lines.append(_tally(result, runs, variants))
    lines += _by_definition(result, runs)
    lines += _toy_study(result, runs)
    return lines


def _library_default(result: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[str]:
    """Where the library's current default DECA stands, when it is not the lab's reference row."""
    default = library_default()
    if default == LAB_REFERENCE or default not in runs:
        return []
    lines = [f"- the library's default DECA now ({runs[default]['label']}; chosen by the quality suite, BENCHMARKS.md "
             f"section Q): accuracy {_text(estimate(result, default))}"]
    for reference, what in ((LOCAL, "local block-wise Adam (no gossip)"), (WITHOUT_BMA, "DECA without BMA"),
                            (LAB_REFERENCE, "the lab's reference DECA")):
        difference = paired(result, default, reference)
        if difference is not None:
            lines.append(f"  - − {what}: {_points(difference)} → **{verdict(difference)}**")
    return lines


def _by_definition(result: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[str]:
    """The best scale of each h definition, and each β's mean over every h setting."""
    lines = []
    for definition in H_DEFINITIONS:
        names = [variant_name(definition, scale, betas) for scale in H_SCALES for betas in BETAS]
        names = [name for name in names if name in runs]
        if names:
            best = max(names, key=lambda name: _mean(result, name))
            lines.append(f"- best of h = {definition.label}: {runs[best]['label']}, accuracy "
                         f"{_text(estimate(result, best))}")
    for betas in BETAS:
        means = [_mean(result, name) for name in (variant_name(d, scale, betas) for d in H_DEFINITIONS
                                                  for scale in H_SCALES) if name in runs]
        if means:
            lines.append(f"- β = ({betas[0]}, {betas[1]}): mean accuracy over its {len(means)} h settings "
                         f"{sum(means) / len(means):.3f}, the best {max(means):.3f}")
    return lines


def _tally(result: dict[str, Any], runs: dict[str, dict[str, Any]], variants: list[str]) -> str:
    verdicts = {name: verdict(paired(result, name, WITHOUT_BMA)) for name in variants}
    ahead = [runs[name]["label"] for name, word in verdicts.items() if word == "ahead"]
    behind = sum(word == "behind" for word in verdicts.values())
    ties = sum(word == "tie" for word in verdicts.values())
    named = f": {'; '.join(ahead)}" if ahead else ""
    return (f"- against w/o BMA, of {len(variants)} BMA settings: {len(ahead)} ahead{named}; {ties} tie; "
            f"{behind} behind")


def _toy_study(result: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[str]:
    """ALGORITHM.md's toy study 2 found h = x½ − x_new (unit norm or ÷γ), β = (0.9, 0.999), +5 to +13 points."""
    gap = next(definition for definition in H_DEFINITIONS if definition.key == "consensus_gap")
    parts = []
    for scale in ("unit_norm", "lr"):
        name = variant_name(gap, scale, BETAS[0])
        difference = paired(result, name, WITHOUT_BMA) if name in runs else None
        if difference is not None:
            parts.append(f"{SCALE_LABELS[scale]} {_points(difference)} ({verdict(difference)})")
    if not parts:
        return []
    return ["- the numpy toy study's winner (h = x½ − x_new, β = (0.9, 0.999); +5 to +13 points over w/o BMA "
            "there) − w/o BMA here: " + "; ".join(parts)]


def _ceiling(result: dict[str, Any]) -> str:
    statistics = list(result.get("task_statistics", {}).values())
    if not statistics:
        return "Bayes ceiling not recorded"
    ceiling = Estimate.of([entry["bayes_accuracy"] for entry in statistics])
    return f"accuracy of the Bayes classifier that knows the topics (the ceiling): {ceiling.text()}"


def _client_examples(setting: dict[str, Any], num_test: int) -> str:
    count = setting.get("client_eval_examples")
    return f"all {num_test}" if count is None or count >= num_test else f"the first {count}, stratified"


def _cpu(result: dict[str, Any]) -> str:
    seconds = [outcome["cpu_s"] for outcome in result["results"] if "cpu_s" in outcome]
    if not seconds:
        return "CPU time not recorded"
    cores = result["metadata"]["machine"]["cpu_cores"]
    return (f"the runs' own CPU time {sum(seconds) / 60:.1f} min, i.e. {sum(seconds) / 60 / cores:.1f} min on "
            f"{cores} otherwise idle cores")


def _load(result: dict[str, Any]) -> str:
    load = result.get("load_average_1min") or {}
    if load.get("start") is None:
        return "not recorded"
    return f"{load['start']:.1f} at the start, {load['end']:.1f} at the end"


def _scores(result: dict[str, Any], name: str) -> str:
    metrics = ("average/accuracy", "average/macro_f1", "clients_mean/accuracy", "clients_mean/macro_f1")
    return " | ".join(_text(estimate(result, name, metric)) for metric in metrics)


def _delta_vs_without(result: dict[str, Any], name: str) -> str:
    return MISSING if name == WITHOUT_BMA else _verdict_text(paired(result, name, WITHOUT_BMA))


def _verdict_text(difference: Estimate | None) -> str:
    return MISSING if difference is None else f"{difference.text(signed=True)} ({verdict(difference)})"


def _points(difference: Estimate | None) -> str:
    if difference is None:
        return "not measured"
    z = "∞" if math.isinf(difference.z) else f"{difference.z:+.1f}"
    return f"{100 * difference.mean:+.1f} ± {100 * difference.se:.1f} points ({z} SE)"


def _mean(result: dict[str, Any], name: str) -> float:
    found = estimate(result, name)
    return -math.inf if found is None else found.mean


def _text(found: Estimate | None, signed: bool = False) -> str:
    return MISSING if found is None else found.text(signed=signed)


def _seconds(result: dict[str, Any], name: str) -> str:
    times = [outcome["train_s"] + outcome["eval_s"] for outcome in result["results"] if outcome["run"] == name]
    return f"{sum(times) / len(times):.1f}" if times else MISSING


def pilot_lines(result: dict[str, Any]) -> list[str]:
    """The learning-rate pilot, one line per (method, lr): what the family rates were read from."""
    return [f"{run['label']}: accuracy (x̄) {_text(estimate(result, run['name']))}" for run in result["runs"]]
