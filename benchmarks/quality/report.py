"""Render the newest quality suite into BENCHMARKS.md between ``<!-- quality:begin -->`` / ``<!-- quality:end -->``.

A v2 suite (``suite.json`` with ``version: 2``) is rendered here, a v1 suite by ``report_v1``. Every
number is read from the suite's result files or derived from them (``comparisons``); a run whose
results are missing shows "—" and the text says what is measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.markdown import update_markdown
from benchmarks.quality import report_v1
from benchmarks.quality.comparisons import GOAL, RunResults, config_changes, goal, paired_difference, run_results
from benchmarks.quality.plan import Results, grid_points
from benchmarks.quality.plots import PLOTS, draw_quality_plots
from benchmarks.quality.presets import ABLATIONS, METHODS, QualityPreset, preset_of
from benchmarks.quality.suite_dir import (
    VERSION,
    earlier_suites,
    load_suite,
    newest_suite,
    result_name,
    suite_wall_time_s,
    x0_name,
)
from benchmarks.statistics import Estimate, Interval

MIB = 2**20
MISSING = "—"
TITLES = {"quality": "## Model quality (section Q)",
          "confirm": "## Model quality, confirmed on fresh seeds (section Q-confirm)"}
GRID_TABLE_INTRO = {
    "quality": "Learning rates: validation accuracy (macro-F1) of x̄ at each rate of the method's grid, seed {seed}; "
               "the chosen rate in bold.",
    "confirm": "Rates, fixed at section Q's choice: validation accuracy (macro-F1) of x̄ at seed {seed}, for the record "
               "(nothing is chosen here).",
}
VALIDATION_USE = {"quality": "learning rates only", "confirm": "scored for the record, choosing nothing"}
CONFIRMATION = ("- a confirmation: every method at the one rate section Q's suite chose for it on validation at seed 0 "
                "(nothing is chosen here), on seeds no choice has seen; DECA with the defaults that suite's ablations "
                "pointed to, so its numbers there were selected and these are not")


def render_newest_quality(results_dir: Path, markdown: Path, kind: str = "quality") -> Path:
    """Plot and render the newest ``<kind>-*/`` suite of ``results_dir`` into ``markdown``'s ``<kind>`` section;
    returns the suite used."""
    suite_dir = newest_suite(results_dir, kind)
    suite, results = load_suite(suite_dir)
    if suite.get("version") == VERSION:
        draw_quality_plots(preset_of(suite["preset"], suite["design"]), _by_file(results), suite_dir)
    else:
        report_v1.draw_quality_plots(results, suite_dir)
    earlier = [load_suite(path) + (path,) for path in earlier_suites(suite_dir)]
    update_markdown(markdown, render_quality(suite, results, suite_dir, earlier), name=kind)
    return suite_dir


def render_quality(suite: dict[str, Any], results: list[dict[str, Any]], suite_path: Path,
                   earlier: Sequence[tuple[dict[str, Any], list[dict[str, Any]], Path]] = ()) -> str:
    """Section Q from one suite; ``earlier``: (suite, results, path) of the v2 suites it replaced, named once each."""
    if suite.get("version") != VERSION:
        return report_v1.render_quality(suite, results, suite_path)
    preset = preset_of(suite["preset"], suite["design"])
    by_file = _by_file(results)
    runs = run_results(preset, by_file)
    lines = [TITLES[preset.kind], "", *_provenance(suite, preset, by_file, runs, suite_path),
             *(_earlier_suite(*replaced) for replaced in earlier), ""]
    lines += [*_goal_lines(preset, runs), ""]
    lines += [GRID_TABLE_INTRO[preset.kind].format(seed=preset.grid_seed), "", *_grid_table(preset, by_file), ""]
    lines += [f"Methods at their chosen rate, on the test split: mean ± std over seeds (x̄: all "
              f"{preset.test_size} test examples; clients: mean of the clients' own models on the first "
              f"{preset.client_examples}).", "", *_methods_table(preset, by_file, runs), ""]
    lines += [f"Against {runs[preset.reference].run.label}: paired differences on the test split, other − DECA, "
              "with 95% hierarchical bootstrap intervals (seeds, then examples within a seed; "
              f"{preset.bootstrap_replicates} replicates). An interval that contains 0 is reported as no difference.",
              "", *_differences_table(preset, runs), ""]
    lines.append("Plots: " + ", ".join(f"[{name}]({(suite_path / name).as_posix()})" for name in PLOTS))
    return "\n".join(lines) + "\n"


def _by_file(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {_file_name(result): result for result in results}


def _file_name(result: dict[str, Any]) -> str:
    return x0_name(result["seed"]) if result["kind"] == "x0" else result_name(result["run"], result["seed"], result["lr"])


def _provenance(suite: dict[str, Any], preset: QualityPreset, results: Results, runs: dict[str, RunResults],
                suite_path: Path) -> list[str]:
    meta = suite["metadata"]
    machine = meta["machine"]
    trained = [result for result in results.values() if result["kind"] == "run"]
    commits = _commits(trained)
    dates = sorted(result["metadata"]["date_utc"] for result in trained) or [meta["date_utc"]]
    reference = next((result for result in runs[preset.reference].per_seed.values()), None)
    grids = _grids(preset.grids)
    lines = [
        f"- suite: `{suite_path.as_posix()}/` (one JSON per (run, seed, lr), x0 per seed, `suite.json`); preset "
        f"`{suite['preset']}`; {len(trained)} training runs measured at commit(s) {', '.join(commits)}, "
        f"{dates[0]} to {dates[-1]}",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, {machine.get('gpu') or 'no GPU'}; wall time "
        f"{_duration(suite_wall_time_s(suite))} over {len(suite['sessions'])} session(s) (training "
        f"{_duration(sum(r['timing']['train_s'] for r in trained))}, scoring the final models "
        f"{_duration(sum(r['timing']['score_s'] for r in trained))}; the rest is x0 once per seed and start-up)",
    ]
    if reference is not None:
        lines += [_setting(reference), _reference_options(runs[preset.reference].run.label, reference)]
    lines += [
        f"- held out per seed: {preset.validation_size + preset.test_size} examples (stratified, deduplicated before "
        "the split, never trained on; drawn from the seed, so each seed holds out different examples and every "
        f"method of a seed the same): the first {preset.validation_size} are the validation split ("
        f"{VALIDATION_USE[preset.kind]}, at seed {preset.grid_seed}), the other {preset.test_size} the test split",
        f"- learning-rate grids: {grids}; ablations run at DECA's chosen rate, not re-tuned (a variant whose best "
        f"rate differs is at a disadvantage); seeds {', '.join(map(str, preset.seeds))} (partition, graph, batches, "
        "adapter initialisation)",
        *_grid_extensions(suite),
        *_reruns(suite),
        *([CONFIRMATION] if preset.kind == "confirm" else []),
    ]
    return lines


def _grids(by_family: Mapping[str, Sequence[float]]) -> str:
    return "; ".join(f"{family} {', '.join(f'{lr:g}' for lr in grid)}" for family, grid in by_family.items())


def _grid_extensions(suite: dict[str, Any]) -> list[str]:
    return [f"- grids extended {extension['date_utc']}, from {_grids(extension['from'])}: the rates measured before "
            "stay, and each method's rate is chosen over its whole grid" for extension in suite.get("grid_extensions", [])]


def _earlier_suite(suite: dict[str, Any], results: list[dict[str, Any]], path: Path) -> str:
    """One line for a suite this one replaced: where it is and how it differed (its numbers stay in its files)."""
    grids = _grids(suite["design"]["grids"])
    trained = [result for result in results if result["kind"] == "run"]
    runs = f"{len(trained)} training run{'' if len(trained) == 1 else 's'}"
    return (f"- replaces `{path.as_posix()}/` ({runs} at commit(s) {', '.join(_commits(trained))}; "
            f"learning-rate grids {grids}): not rendered here; docs/decisions.md says what it found and why it "
            "was replaced")


def _setting(result: Mapping[str, Any]) -> str:
    config = result["config"]
    algorithm, data, partition = config["algorithm"], config["data"], config["partition"]
    blocks = algorithm["blocks"]
    return (f"- setting (from the `{result['run']}` run): {config['num_clients']} clients, {config['topology']['type']} "
            f"graph ({config['topology']['weights']} weights), {partition['type']} partition (α = "
            f"{partition.get('alpha')}), {config['model']['name']}; T = {algorithm['rounds']} rounds over blocks "
            f"{blocks['fixed_order']} ({blocks['layers_per_block']} layer(s) per block), R = {algorithm['inner_steps']}:"
            f" {result['training']['steps_per_client']} steps per client; batch {data['batch_size']}, at most "
            f"{data['max_tokens']} tokens, {data['body_words']} words of body; {config['runtime']['backend']} backend")


def _reference_options(label: str, result: Mapping[str, Any]) -> str:
    """The reference's own method options, from its config (what it ran, whatever the defaults are now)."""
    shared = {"type", "rounds", "inner_steps", "lr", "blocks", "adam_beta1", "adam_beta2", "eps"}
    options = ", ".join(f"{key} {value}" for key, value in result["config"]["algorithm"].items() if key not in shared)
    return f"- {label}: {options or 'no options of its own'}"


def _goal_lines(preset: QualityPreset, runs: dict[str, RunResults]) -> list[str]:
    found = goal(preset, runs)
    reference = runs[preset.reference].run.label
    return [f"**Goal**: {GOAL} → **{found.verdict}**", "",
            f"- {reference} − {found.rival or 'the best parameter-efficient baseline'} (best of the three by mean "
            f"accuracy): {_interval(found.against_rival)}",
            f"- {reference} − DECA w/o BMA: {_interval(found.against_without_bma)}"]


def _grid_table(preset: QualityPreset, results: Results) -> list[str]:
    lines = ["| method | validation accuracy (macro-F1) per lr | chosen lr |", "|---|---|---|"]
    for run in preset.runs:
        if run.table != METHODS:
            continue
        points, missing = grid_points(preset, run, results)
        best = max(points, key=lambda point: (point.accuracy, point.macro_f1)) if points and not missing else None
        measured = {point.lr: point for point in points}
        cells = []
        for lr in preset.grids[run.family or ""]:
            point = measured.get(lr)
            cell = f"{lr:g}: " + (MISSING if point is None else f"{point.accuracy:.3f} ({point.macro_f1:.3f})")
            cells.append(f"**{cell}**" if point is not None and point is best else cell)
        lines.append(f"| {run.label} | {' · '.join(cells)} | {f'{best.lr:g}' if best else MISSING} |")
    return lines


def _methods_table(preset: QualityPreset, results: Results, runs: dict[str, RunResults]) -> list[str]:
    lines = ["| method | lr | seeds | accuracy (x̄) | macro-F1 (x̄) | accuracy (clients) | macro-F1 (clients) "
             "| final training loss | MiB sent per client | tensor MiB per client | training s per run | scoring s per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    before = [results[x0_name(seed)]["scores"]["average"]["test"] for seed in preset.seeds if x0_name(seed) in results]
    if before:
        cells = [_spread(Estimate.of([score[key] for score in before])) for key in ("accuracy", "macro_f1")]
        lines.append(f"| before training (x0, shared start) | {MISSING} | {len(before)} | {' | '.join(cells)} | "
                     + " | ".join([MISSING] * 7) + " |")
    for summary in runs.values():
        if summary.run.table == METHODS:
            cells = [_spread(summary.estimate(key)) for key in
                     ("accuracy", "macro_f1", "clients_accuracy", "clients_macro_f1")]
            cells += [_scaled(summary.estimate("final_loss"), 1, 3),
                      _scaled(summary.estimate("bytes_sent"), MIB, 1), _scaled(summary.estimate("tensor_bytes"), MIB, 1),
                      _scaled(summary.estimate("train_s"), 1, 0), _scaled(summary.estimate("score_s"), 1, 0)]
            lines.append(f"| {summary.run.label} | {_lr(summary)} | {len(summary.per_seed)} | {' | '.join(cells)} |")
    return lines


def _differences_table(preset: QualityPreset, runs: dict[str, RunResults]) -> list[str]:
    reference = runs[preset.reference]
    lines = ["| run | differs from DECA in | seeds | accuracy (x̄) | Δ accuracy [95% CI] | verdict | Δ macro-F1 "
             "[95% CI] | final training loss | mean consensus distance |", "|---|---|---|---|---|---|---|---|---|"]
    for table in (METHODS, ABLATIONS):
        for summary in runs.values():
            if summary.run.table != table or summary.run.name == preset.reference:
                continue
            accuracy = paired_difference(summary, reference, "accuracy", preset.bootstrap_replicates)
            macro_f1 = paired_difference(summary, reference, "macro_f1", preset.bootstrap_replicates)
            cells = [_changes(summary, reference), str(len(summary.per_seed)), _spread(summary.estimate("accuracy")),
                     _cell(accuracy), accuracy.verdict if accuracy else MISSING, _cell(macro_f1),
                     _scaled(summary.estimate("final_loss"), 1, 3), _scientific(summary.estimate("consensus"))]
            lines.append(f"| {summary.run.label} | {' | '.join(cells)} |")
    return lines


def _changes(summary: RunResults, reference: RunResults) -> str:
    if summary.run.table == METHODS:
        return "the method"
    seeds = sorted(set(summary.per_seed) & set(reference.per_seed))
    if not seeds:
        return MISSING
    changes = config_changes(summary.per_seed[seeds[0]]["config"], reference.per_seed[seeds[0]]["config"])
    return "; ".join(f"`{change}`" for change in changes) or "nothing (same config)"


def _reruns(suite: dict[str, Any]) -> list[str]:
    return [f"- re-measured: `{rerun['file']}` at commit `{rerun['commit']}` on {rerun['date_utc']}; the result it "
            f"replaced is `superseded/{rerun['superseded']}`" for rerun in suite.get("reruns", [])]


def _commits(trained: list[dict[str, Any]]) -> list[str]:
    """The commits the training runs were measured at, each once."""
    return sorted({_commit(result["metadata"]["git"]) for result in trained}) or [MISSING]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"


def _commit(git: dict[str, Any]) -> str:
    return f"`{git.get('commit') or 'unknown'}`" + (" (with uncommitted changes)" if git.get("dirty") else "")


def _lr(summary: RunResults) -> str:
    return MISSING if summary.lr is None else f"{summary.lr:g}"


def _spread(estimate: Estimate | None) -> str:
    return MISSING if estimate is None else estimate.spread()


def _scaled(estimate: Estimate | None, unit: float, digits: int) -> str:
    return MISSING if estimate is None else f"{estimate.mean / unit:.{digits}f}"


def _scientific(estimate: Estimate | None) -> str:
    return MISSING if estimate is None else f"{estimate.mean:.2e}"


def _cell(interval: Interval | None) -> str:
    return MISSING if interval is None else interval.text()


def _interval(interval: Interval | None) -> str:
    if interval is None:
        return MISSING
    return f"{interval.text()} ({interval.verdict}, {interval.seeds} seed{'s' if interval.seeds > 1 else ''})"
