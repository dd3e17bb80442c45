"""The report of a v1 quality suite (one seed, one file per run; superseded by v2, still rendered from its files).

Every number is read from the suite's result files or derived from them (deltas, means of
curves, who won a comparison, the binomial noise level), so the text never states a
conclusion the data does not carry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # pyplot-free: no backend or global figure state

MIB = 2**20
FINAL_LOSS_STEPS = 5
"""The final training loss is the mean of this many last steps: one step's batch loss is noisy."""
MISSING = "—"
METHOD_PLOTS = ("loss_curves.png", "accuracy.png")
ABLATION_PLOT = "ablation_loss_curves.png"

_H_SIGN = {"old_minus_new": "old − new", "new_minus_old": "new − old"}
_H_SCALE = {"lr": "÷ γ", "raw": "raw scale", "unit_norm": "unit norm"}


def _h_setting(config: dict[str, Any]) -> str:
    algorithm = config["algorithm"]
    return f"h = {_H_SIGN[algorithm['h_sign']]} {_H_SCALE[algorithm['h_scale']]}"


def _bma_setting(config: dict[str, Any]) -> str:
    return f"{config['algorithm']['variant']} BMA"


def _layers_setting(config: dict[str, Any]) -> str:
    return f"{config['algorithm']['blocks']['layers_per_block']} layers per block"


def _topology_setting(config: dict[str, Any]) -> str:
    return f"{config['topology']['type']} graph"


# Each comparison: the DECA default (described from its own config) against these ablation runs.
GROUPS: tuple[tuple[str, tuple[str, ...], Callable[[dict[str, Any]], str]], ...] = (
    ("h sign and scale", ("ablation-h_new_minus_old", "ablation-h_raw", "ablation-h_unit_norm"), _h_setting),
    ("BMA", ("ablation-without_bma", "ablation-trivial_bma"), _bma_setting),
    ("layers per block", ("ablation-one_layer_blocks",), _layers_setting),
    ("topology", ("ablation-ring", "ablation-bipartite"), _topology_setting),
    ("defaults chosen from this suite", ("ablation-chosen_defaults",),
     lambda config: f"{_h_setting(config)}, {_layers_setting(config)}"),
)


def render_quality(suite: dict[str, Any], results: list[dict[str, Any]], suite_path: Path) -> str:
    by_name = {result["run"]: result for result in results}
    deca = by_name.get("deca")
    methods = [result for result in results if result["table"] == "methods"]
    ablations = [result for result in results if result["table"] == "ablations"]
    noise = _standard_error(deca)
    lines = ["## Model quality (section Q)", "", *_provenance(suite, results, deca or results[0], suite_path), ""]
    lines += _methods_table(methods, _before(results))
    if ablations:
        lines += ["", *_ablations_table(deca, ablations)]
    findings = [line for group in GROUPS if (line := _winner(group, deca, by_name, noise)) is not None]
    if findings:
        lines += ["", "Which setting won (average-model accuracy, ties broken by macro-F1):", "", *findings]
    if deca is not None and noise is not None:
        lines += ["", _noise_line(deca, noise)]
    if deca is not None:
        lines += _unmeasured(deca["config"])
    plots = ", ".join(f"[{name}]({(suite_path / name).as_posix()})" for name in _plot_names(results))
    lines += ["", f"Plots: {plots}"]
    return "\n".join(lines) + "\n"


def draw_quality_plots(results: list[dict[str, Any]], suite_dir: Path) -> list[Path]:
    """Training-loss curves (methods; DECA + ablations) and an accuracy bar chart, as PNGs in ``suite_dir``."""
    methods = [result for result in results if result["table"] == "methods"]
    losses, accuracy = (suite_dir / name for name in METHOD_PLOTS)
    paths = [_draw_losses(methods, losses), _draw_accuracy(methods, _before(results), accuracy)]
    if ABLATION_PLOT in _plot_names(results):
        reference = [result for result in results if result["run"] == "deca"]
        ablations = [result for result in results if result["table"] == "ablations"]
        paths.append(_draw_losses(reference + ablations, suite_dir / ABLATION_PLOT))
    return paths


def _plot_names(results: list[dict[str, Any]]) -> list[str]:
    """The PNGs a suite gets: shared by the renderer's links and the plotter, so they always agree."""
    has_ablations = any(result["table"] == "ablations" for result in results)
    return [*METHOD_PLOTS, *([ABLATION_PLOT] if has_ablations else [])]


def _provenance(suite: dict[str, Any], results: list[dict[str, Any]], reference: dict[str, Any],
                suite_path: Path) -> list[str]:
    meta = suite["metadata"]
    git, machine = meta["git"], meta["machine"]
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    seeds = sorted({result["seed"] for result in results})
    config = reference["config"]
    data, partition = config["data"], config["partition"]
    alpha = f" (α = {partition['alpha']})" if partition["type"] == "dirichlet" else ""
    return [
        f"- suite: `{suite_path.as_posix()}/` (one JSON per run + `suite.json`); preset `{suite['preset']}`; "
        f"commit `{git.get('commit') or 'unknown'}`{dirty}; finished {meta['date_utc']}",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, {machine.get('gpu') or 'no GPU'}; "
        f"all runs took {suite['wall_time_s'] / 60:.1f} min; {len(seeds)} seed{'s' if len(seeds) > 1 else ''} "
        f"({', '.join(map(str, seeds))})",
        f"- setting (from the `{reference['run']}` run): {config['num_clients']} clients, {config['topology']['type']} "
        f"graph, {partition['type']} partition{alpha}, {config['model']['name']}, "
        f"{reference['metrics']['steps_per_client']} steps per client, batch {data['batch_size']}, "
        f"at most {data['max_tokens']} tokens, {data['test_size']} held-out examples",
        *_reruns(suite),
    ]


def _unmeasured(config: dict[str, Any]) -> list[str]:
    """Open points this suite's schedule cannot tell apart, derived from the DECA run's config."""
    algorithm = config["algorithm"]
    lines = []
    if algorithm["rounds"] == 1:
        lines.append("moment lifetime: with one round every block is activated once, so `persistent` and "
                     "`per_activation` moments are the same run")
    if algorithm["blocks"]["order"] == "fixed":
        lines.append(f"block order: the schedule visits the fixed blocks {algorithm['blocks']['fixed_order']}")
    return ["", "Not measured by this suite: " + "; ".join(lines) + "."] if lines else []


def _reruns(suite: dict[str, Any]) -> list[str]:
    """Runs measured again after the suite (a fix changed them); their files record their own commit."""
    return [f"- re-run after the suite: `{rerun['run']}` at commit `{rerun['commit']}` on {rerun['date_utc']} "
            f"({rerun['wall_time_s'] / 60:.1f} min); a result it replaced is kept in `superseded/`"
            for rerun in suite.get("reruns", [])]


def _before(results: list[dict[str, Any]]) -> dict[str, float] | None:
    """Scores of the untrained model: every method starts from it, so one run measures it."""
    return next((result["metrics"]["before"] for result in results if result["metrics"]["before"]), None)


def _methods_table(methods: list[dict[str, Any]], before: dict[str, float] | None) -> list[str]:
    lines = ["| method | lr | accuracy (avg model) | macro-F1 (avg model) | accuracy (clients, mean ± std) "
             "| macro-F1 (clients, mean ± std) | MiB sent per client "
             "| tensor MiB per client (weights + grads + optimizer state) | wall time (s) "
             "| median step (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    if before is not None:
        cells = [MISSING, _score(before.get("avg/accuracy")), _score(before.get("avg/macro_f1"))] + [MISSING] * 6
        lines.append(f"| before training (shared start) | {' | '.join(cells)} |")
    for result in methods:
        metrics, after = result["metrics"], result["metrics"]["after"]
        cells = [
            f"{result['config']['algorithm']['lr']:g}",
            _score(after.get("avg/accuracy")), _score(after.get("avg/macro_f1")),
            _spread(after, "accuracy"), _spread(after, "macro_f1"),
            f"{metrics['bytes_sent_per_client'] / MIB:.1f}", f"{metrics['peak_tensor_bytes_per_client'] / MIB:.1f}",
            f"{metrics['wall_time_s']:.1f}", f"{metrics['median_step_time_s']:.3f}",
        ]
        lines.append(f"| {result['label']} | {' | '.join(cells)} |")
    return lines


def _ablations_table(deca: dict[str, Any] | None, ablations: list[dict[str, Any]]) -> list[str]:
    lines = ["| DECA variant | accuracy (avg model) | macro-F1 (avg model) | Δ accuracy vs DECA | Δ macro-F1 vs DECA "
             f"| final training loss (mean of last {FINAL_LOSS_STEPS} steps) | mean consensus distance "
             "| spectral gap |",
             "|---|---|---|---|---|---|---|---|"]
    reference = deca["metrics"]["after"] if deca is not None else {}
    for result in ([deca] if deca is not None else []) + ablations:
        after = result["metrics"]["after"]
        label = _default_label(result) if result is deca else result["label"]
        metrics = ("accuracy", "macro_f1")
        deltas = [MISSING] * 2 if result is deca else [_delta(after, reference, key) for key in metrics]
        cells = [_score(after.get("avg/accuracy")), _score(after.get("avg/macro_f1")), *deltas,
                 f"{_final_loss(result):.3f}", _consensus(result), _gap(result)]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def _default_label(deca: dict[str, Any]) -> str:
    # Groups may describe the same setting (the chosen-defaults group repeats h and layers): once each.
    parts = (part for _, _, describe in GROUPS for part in describe(deca["config"]).split(", "))
    return f"DECA default ({', '.join(dict.fromkeys(parts))})"


def _winner(group: tuple[str, tuple[str, ...], Callable[[dict[str, Any]], str]], deca: dict[str, Any] | None,
            by_name: dict[str, dict[str, Any]], noise: float | None) -> str | None:
    """One line naming the best run of a comparison; ``None`` when fewer than two of its runs exist."""
    title, names, describe = group
    entrants = [(f"DECA default ({describe(deca['config'])})", deca["metrics"]["after"])] if deca is not None else []
    entrants += [(by_name[name]["label"], by_name[name]["metrics"]["after"]) for name in names if name in by_name]
    if len(entrants) < 2:
        return None
    ranked = sorted(entrants, key=lambda entry: (entry[1]["avg/accuracy"], entry[1]["avg/macro_f1"]), reverse=True)
    (best, first), (runner_up, second) = ranked[:2]
    compared = f"{len(ranked)} compared" if len(ranked) == len(names) + 1 else f"{len(ranked)} of {len(names) + 1} ran"
    if (first["avg/accuracy"], first["avg/macro_f1"]) == (second["avg/accuracy"], second["avg/macro_f1"]):
        return f"- {title} ({compared}): no winner, {best} and {runner_up} tie ({_scores(first)})"
    margin = first["avg/accuracy"] - second["avg/accuracy"]
    tie_break = " (same accuracy, ahead on macro-F1)" if margin == 0 else ""
    within = " — within noise" if noise is not None and margin < 2 * noise else ""
    return (f"- {title} ({compared}): **{best}** ({_scores(first)}), {100 * margin:.1f} accuracy points ahead of "
            f"{runner_up} ({_scores(second)}){tie_break}{within}")


def _standard_error(deca: dict[str, Any] | None) -> float | None:
    """Binomial standard error of DECA's accuracy; needs the held-out size as a count, not a fraction."""
    if deca is None or not isinstance(deca["config"]["data"]["test_size"], int):
        return None
    accuracy = deca["metrics"]["after"]["avg/accuracy"]
    return math.sqrt(accuracy * (1 - accuracy) / deca["config"]["data"]["test_size"])


def _noise_line(deca: dict[str, Any], noise: float) -> str:
    accuracy, size = deca["metrics"]["after"]["avg/accuracy"], deca["config"]["data"]["test_size"]
    return (f"Noise: at DECA's accuracy {accuracy:.3f} on {size} held-out examples the binomial standard error is "
            f"{noise:.3f} ({100 * noise:.1f} points), so differences below about 2 SE = {200 * noise:.1f} accuracy "
            "points are within noise.")


def _final_loss(result: dict[str, Any]) -> float:
    tail = result["curves"]["mean_loss"][-FINAL_LOSS_STEPS:]
    return sum(tail) / len(tail)


def _consensus(result: dict[str, Any]) -> str:
    measured = [value for value in result["curves"]["consensus_distance"] if value is not None]
    return f"{sum(measured) / len(measured):.2e}" if measured else MISSING


def _gap(result: dict[str, Any]) -> str:
    gap = result.get("topology", {}).get("spectral_gap")  # older result files have no topology
    return MISSING if gap is None else f"{gap:.3f}"


def _delta(after: dict[str, float], reference: dict[str, float], metric: str) -> str:
    key = f"avg/{metric}"
    if key not in after or key not in reference:
        return MISSING
    return f"{after[key] - reference[key]:+.3f}"


def _spread(after: dict[str, float], metric: str) -> str:
    mean, std = after.get(f"clients_mean/{metric}"), after.get(f"clients_std/{metric}")
    return MISSING if mean is None or std is None else f"{mean:.3f} ± {std:.3f}"


def _score(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3f}"


def _scores(after: dict[str, float]) -> str:
    return f"accuracy {after['avg/accuracy']:.3f}, macro-F1 {after['avg/macro_f1']:.3f}"


def _draw_losses(results: list[dict[str, Any]], path: Path) -> Path:
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    for result in results:
        axes.plot(result["curves"]["step"], result["curves"]["mean_loss"], linewidth=1.5, label=result["label"])
    axes.set_xlabel("inner step")
    axes.set_ylabel("training loss, mean over clients")
    axes.legend(fontsize=7)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def _draw_accuracy(methods: list[dict[str, Any]], before: dict[str, float] | None, path: Path) -> Path:
    figure = Figure(figsize=(8, 4))
    axes = figure.subplots()
    positions = range(len(methods))
    width = 0.4
    # a missing clients' mean (per-client evaluation off) is NaN: matplotlib leaves the bar out
    averaged = [result["metrics"]["after"]["avg/accuracy"] for result in methods]
    clients = [result["metrics"]["after"].get("clients_mean/accuracy", math.nan) for result in methods]
    axes.bar([x - width / 2 for x in positions], averaged, width, label="average model")
    axes.bar([x + width / 2 for x in positions], clients, width, label="clients' mean")
    if before is not None:
        axes.axhline(before["avg/accuracy"], color="black", linestyle="--", linewidth=1, label="before training")
    axes.set_xticks(list(positions), [result["label"] for result in methods], rotation=30, ha="right", fontsize=7)
    axes.set_ylabel("held-out accuracy")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path
