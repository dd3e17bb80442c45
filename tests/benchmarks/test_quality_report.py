"""The v2 quality report from hand-made result files: grid, methods, paired intervals, the goal, the section only."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from benchmarks.markdown import HEADER
from benchmarks.quality.presets import QUICK
from benchmarks.quality.report import render_newest_quality, render_quality
from benchmarks.quality.suite_dir import SUITE_FILE, VERSION, result_name, x0_name

MIB = 2**20
LABELS = [0, 1, 2, 3, 4] * 2  # QUICK's 10 test examples
RIGHT, WRONG = LABELS, [(label + 1) % 5 for label in LABELS]
META = {"git": {"commit": "abc123", "dirty": False}, "date_utc": "2026-01-01T00:00:00+00:00",
        "machine": {"cpu_model": "Test CPU", "cpu_cores": 2, "gpu": None}}
CONFIG = {"num_clients": 3, "model": {"name": "tiny-llama"}, "runtime": {"backend": "local"},
          "data": {"batch_size": 2, "max_tokens": 48, "body_words": 20},
          "partition": {"type": "dirichlet", "alpha": 0.25},
          "topology": {"type": "ring", "weights": "metropolis_hastings"},
          "algorithm": {"type": "deca", "rounds": 2, "inner_steps": 1, "variant": "full",
                        "blocks": {"layers_per_block": 1, "fixed_order": [3, 2]}}}


def _scores(predictions: list[int]) -> dict[str, Any]:
    accuracy = sum(p == label for p, label in zip(predictions, LABELS[: len(predictions)], strict=True)) / len(predictions)
    return {"accuracy": accuracy, "macro_f1": accuracy / 2, "predictions": predictions}


def _result(run: str, table: str, seed: int, lr: float, test: list[int], validation: float | None = None,
            **config: Any) -> dict[str, Any]:
    average = {"test": _scores(test)}
    if validation is not None:
        average["validation"] = {"accuracy": validation, "macro_f1": 0.1, "predictions": [0] * 6}
    merged = copy.deepcopy(CONFIG)
    merged["algorithm"] |= config
    return {
        "version": VERSION, "kind": "run", "metadata": META, "preset": "quick", "run": run, "table": table,
        "label": QUICK.run(run).label, "family": QUICK.run(run).family, "seed": seed, "lr": lr,
        "phase": "grid" if validation is not None else "seeds", "config": merged,
        "training": {"steps_per_client": 4, "bytes_sent_per_client": 2 * MIB, "peak_tensor_bytes_per_client": 8 * MIB,
                     "median_step_time_s": 0.5, "num_clients": 3, "run_wall_time_s": 10.0},
        "topology": {"spectral_gap": 0.5},
        "curves": {"step": [0, 1, 2, 3], "mean_loss": [3.0, 2.0, 1.0, 0.5], "consensus_distance": [None, 1e-3, None, 3e-3]},
        "held_out": {"digest": f"seed{seed}", "labels": {"test": LABELS}},
        "scores": {"average": average, "clients": [{"client": 0, **_scores(test[:5])}, {"client": 1, **_scores(RIGHT[:5])}]
                   if table == "methods" else []},
        "timing": {"train_s": 12.0, "score_s": 3.0, "wall_time_s": 15.0},
    }


def _x0(seed: int) -> dict[str, Any]:
    return {"version": VERSION, "kind": "x0", "seed": seed, "metadata": META,
            "held_out": {"digest": f"seed{seed}", "labels": {"test": LABELS}},
            "scores": {"average": {"test": _scores(WRONG[:8] + RIGHT[8:])}}}


def _suite(without_bma: list[int], rival: list[int]) -> list[dict[str, Any]]:
    """DECA right everywhere at lr 1e-2 (chosen); DeCAF at 1e-3 (chosen) predicting ``rival``."""
    results = [_x0(0), _x0(1)]
    for seed in (0, 1):
        grid = seed == 0
        results += [_result("deca", "methods", seed, 1e-2, RIGHT, validation=0.8 if grid else None),
                    _result("decaf", "methods", seed, 1e-3, rival, validation=0.6 if grid else None),
                    _result("ablation-without_bma", "ablations", seed, 1e-2, without_bma, variant="without_bma")]
    results += [_result("deca", "methods", 0, 1e-3, WRONG, validation=0.4),  # the grid's other rates
                _result("decaf", "methods", 0, 1e-2, WRONG, validation=0.5)]
    return results


SUITE = {"version": VERSION, "preset": "quick", "design": QUICK.design(), "metadata": META, "reruns": [],
         "sessions": [{"wall_time_s": 1800.0}, {"wall_time_s": 1800.0}]}  # 1 h in all


GRID, METHODS, DIFFERENCES = "| method | validation", "| method | lr |", "| run | differs"


def _row(text: str, table: str, label: str) -> list[str]:
    """The cells after the label of row ``label`` in the table whose header starts with ``table``."""
    lines = text.split(f"\n{table}", 1)[1].split("\n\n", 1)[0].splitlines()
    rows = [line for line in lines if line.startswith(f"| {label} |")]
    assert len(rows) == 1, rows
    return [cell.strip() for cell in rows[0].strip("|").split("|")][1:]


def test_grid_methods_and_paired_differences_come_from_the_files():
    text = render_quality(SUITE, _suite(without_bma=RIGHT, rival=WRONG), Path("suite"))
    # the grid: validation accuracy per rate, the chosen one in bold
    assert _row(text, GRID, "DECA") == ["0.001: 0.400 (0.100) · **0.01: 0.800 (0.100)**", "0.01"]
    assert _row(text, GRID, "DeCAF") == ["**0.001: 0.600 (0.100)** · 0.01: 0.500 (0.100)", "0.001"]
    # the methods at their chosen rate: mean ± std over seeds, client means, final loss (its 4 steps' mean), MiB, seconds
    assert _row(text, METHODS, "DECA") == ["0.01", "2", "1.000 ± 0.000", "0.500 ± 0.000", "1.000 ± 0.000",
                                           "0.500 ± 0.000", "1.625", "2.0", "8.0", "12", "3"]
    assert _row(text, METHODS, "DeCAF")[4] == "0.500 ± 0.000"  # clients: one wrong, one right on its 5
    assert _row(text, METHODS, "before training (x0, shared start)")[:3] == ["—", "2", "0.200 ± 0.000"]
    # other − DECA, paired: DeCAF wrong everywhere DECA is right → −1 exactly; w/o BMA identical → 0 exactly
    decaf = _row(text, DIFFERENCES, "DeCAF")
    assert decaf[:5] == ["the method", "2", "0.000 ± 0.000", "-1.000 [-1.000, -1.000]", "worse"]
    without = _row(text, DIFFERENCES, "w/o BMA")
    assert without[:5] == ["`algorithm.variant: full → without_bma`", "2", "1.000 ± 0.000", "+0.000 [+0.000, +0.000]",
                           "no difference"]
    assert without[6:] == ["1.625", "2.00e-03"]  # final loss: mean of the last 5 (all 4) steps; consensus measured
    # the ablation not measured yet is listed with dashes
    assert _row(text, DIFFERENCES, "blocks bottom up")[:4] == ["—", "0", "—", "—"]
    # an incomplete grid chooses nothing yet: its method has no rows but the grid's
    partial = [r for r in _suite(without_bma=RIGHT, rival=WRONG) if (r.get("run"), r.get("lr")) != ("deca", 1e-3)]
    text_partial = render_quality(SUITE, partial, Path("suite"))
    assert _row(text_partial, GRID, "DECA") == ["0.001: — · 0.01: 0.800 (0.100)", "—"]
    assert _row(text_partial, METHODS, "DECA")[:3] == ["—", "0", "—"]
    assert "- suite: `suite/`" in text and "`abc123`" in text and "wall time 60.0 min over 2 session(s) (training 1.6 min, scoring the final models 0.4 min" in text


def test_goal_is_met_not_met_or_undecided_by_the_intervals():
    undecided = render_quality(SUITE, _suite(without_bma=RIGHT, rival=WRONG), Path("suite"))
    assert "→ **undecided**" in undecided and "DECA − DeCAF (best of the three" in undecided
    met = render_quality(SUITE, _suite(without_bma=WRONG, rival=WRONG), Path("suite"))
    assert "→ **met**" in met and "+1.000 [+1.000, +1.000] (better, 2 seeds)" in met
    tied = render_quality(SUITE, _suite(without_bma=WRONG, rival=RIGHT), Path("suite"))
    assert "→ **undecided**" in tied  # DeCAF ties DECA: the interval is neither above 0 nor below
    behind = _suite(without_bma=WRONG, rival=WRONG)
    for result in behind:
        if result.get("run") == "deca" and result["lr"] == 1e-2:
            result["scores"]["average"]["test"] = _scores(WRONG)  # DECA wrong everywhere, as DeCAF
    for result in behind:
        if result.get("run") == "ablation-without_bma":
            result["scores"]["average"]["test"] = _scores(RIGHT)  # w/o BMA right everywhere: below 0 fails
    assert "→ **not met**" in render_quality(SUITE, behind, Path("suite"))
    empty = render_quality(SUITE, [_x0(0)], Path("suite"))
    assert "→ **not measured yet**" in empty


def test_newest_v2_suite_is_plotted_and_replaces_only_the_quality_section(tmp_path):
    # Prepare: an older v1-shaped directory name sorts first; the newest is v2; other sections around
    results_dir = tmp_path / "results"
    suite_dir = results_dir / "quality-20270101T000000Z"
    suite_dir.mkdir(parents=True)
    (suite_dir / SUITE_FILE).write_text(json.dumps(SUITE))
    for result in _suite(without_bma=RIGHT, rival=WRONG):
        name = x0_name(result["seed"]) if result["kind"] == "x0" else result_name(result["run"], result["seed"],
                                                                                   result["lr"])
        (suite_dir / name).write_text(json.dumps(result))
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# B\n\n<!-- system:begin -->\nS\n<!-- system:end -->\n\n<!-- quality:begin -->\nstale\n"
                        "<!-- quality:end -->\n\n<!-- lab:begin -->\nL\n<!-- lab:end -->\n")
    # Execute
    assert render_newest_quality(results_dir, markdown) == suite_dir
    # Assert: only the quality section changed; the plots exist and are linked
    text = markdown.read_text()
    assert text.startswith(HEADER) and "stale" not in text and "## Model quality (section Q)" in text
    assert "<!-- system:begin -->\nS\n<!-- system:end -->" in text and "<!-- lab:begin -->\nL\n<!-- lab:end -->" in text
    assert text.index("<!-- system:end -->") < text.index("<!-- quality:begin -->") < text.index("<!-- lab:begin -->")
    for name in ("accuracy.png", "loss_curves.png", "ablation_loss_curves.png"):
        assert (suite_dir / name).stat().st_size > 0 and f"]({(suite_dir / name).as_posix()})" in text


def test_a_suite_replaced_by_a_newer_one_is_named_with_its_grids_not_rendered(tmp_path):
    # Prepare: an older v2 suite with lower grids (one DECA run), a v1 suite older still, the newest v2 suite
    results_dir = tmp_path / "results"
    older_design = QUICK.design() | {"grids": {"adam": [1e-5, 3e-5, 1e-4]}}
    suites = {"quality-20260101T000000Z": ({"version": 1, "runs": []}, []),
              "quality-20260601T000000Z": (SUITE | {"design": older_design},
                                           [_result("deca", "methods", 0, 1e-4, WRONG, validation=0.2)]),
              "quality-20270101T000000Z": (SUITE, _suite(without_bma=RIGHT, rival=WRONG))}
    for name, (suite, results) in suites.items():
        (results_dir / name).mkdir(parents=True)
        (results_dir / name / SUITE_FILE).write_text(json.dumps(suite))
        for result in results:
            file = x0_name(result["seed"]) if result["kind"] == "x0" else result_name(result["run"], result["seed"],
                                                                                       result["lr"])
            (results_dir / name / file).write_text(json.dumps(result))
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# B\n\n<!-- quality:begin -->\n<!-- quality:end -->\n")
    # Execute
    render_newest_quality(results_dir, markdown)
    # Assert: the older v2 suite is named once, with its grids and size; its numbers are not in the tables
    text = markdown.read_text()
    replaced = [line for line in text.splitlines() if line.startswith("- replaces ")]
    assert replaced == [f"- replaces `{(results_dir / 'quality-20260601T000000Z').as_posix()}/` (1 training run at "
                        "commit(s) `abc123`; learning-rate grids adam 1e-05, 3e-05, 0.0001): not rendered here; "
                        "docs/decisions.md says what it found and why it was replaced"]
    assert "0.0001" not in text.replace(replaced[0], "")


def test_a_grid_extension_is_stated_with_the_grids_before_it():
    extended = SUITE | {"grid_extensions": [{"date_utc": "2026-06-01T00:00:00Z", "from": {"adam": [1e-3]},
                                             "to": {"adam": [1e-3, 1e-2]}}]}
    text = render_quality(extended, _suite(without_bma=RIGHT, rival=WRONG), Path("suite"))
    assert ("- grids extended 2026-06-01T00:00:00Z, from adam 0.001: the rates measured before stay, and each "
            "method's rate is chosen over its whole grid") in text.splitlines()
