"""The quality suite's phases and files: lr grid → chosen lr → seeds → ablations, resumable, re-runnable.

The orchestration is tested with a stand-in for the training + scoring of one job (fast); one test
runs the quick preset for real, end to end into a temporary directory, and renders it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.quality import run as quality_run
from benchmarks.quality.measure import job_config
from benchmarks.quality.plan import Job, chosen_lr, grid_points
from benchmarks.quality.presets import (
    ADAM_GRID,
    ADAPTER_GRID,
    CONFIRM,
    CONFIRMED_RATES,
    FULL,
    METHODS,
    QUICK,
    SGD_GRID,
    preset_of,
)
from benchmarks.quality.report import render_newest_quality
from benchmarks.quality.suite_dir import SUITE_FILE, earlier_suites, load_suite, newest_suite, read_results, result_name
from benchmarks.results import NoResultError
from deca_ray.errors import ConfigError
from deca_ray.methods import method_names
from deca_ray.schedule import total_steps

VALIDATION = {("deca", 1e-3): (0.5, 0.4), ("deca", 1e-2): (0.5, 0.6),  # same accuracy: macro-F1 decides
              ("decaf", 1e-3): (0.7, 0.1), ("decaf", 1e-2): (0.3, 0.9)}


@pytest.fixture()
def fake_jobs(monkeypatch):
    """Every job "measured" instantly, with the validation scores of ``VALIDATION``; returns the jobs measured."""
    measured: list[Job] = []

    def measure(preset, job, config, held):
        measured.append(job)
        accuracy, macro_f1 = VALIDATION.get((job.run.name, job.lr), (0.2, 0.2))
        average = {"test": {"accuracy": accuracy, "macro_f1": macro_f1}}
        if job.phase == "grid":
            average["validation"] = {"accuracy": accuracy, "macro_f1": macro_f1}
        return {"kind": "run", "run": job.run.name, "seed": job.seed, "lr": job.lr, "phase": job.phase,
                "metadata": {"git": {"commit": "abc"}, "date_utc": "2026-01-01"}, "scores": {"average": average}}

    class HeldOut:
        def __init__(self, *args):
            pass

        def get(self, config):
            return None

    monkeypatch.setattr(quality_run, "measure", measure)
    monkeypatch.setattr(quality_run, "HeldOutCache", HeldOut)
    monkeypatch.setattr(quality_run, "x0_record", lambda preset, seed, held, config: {"kind": "x0", "seed": seed})
    return measured


def _run(tmp_path: Path, **options) -> Path:
    return quality_run.run_quality_benchmark(QUICK, tmp_path / "results", output_dir=tmp_path / "runs", **options)


def test_grid_chooses_by_validation_then_seeds_and_ablations_run_at_the_chosen_lr(tmp_path, fake_jobs):
    suite_dir = _run(tmp_path)
    files = set(read_results(suite_dir))
    # the grid: every method at every rate of its family, on the grid seed
    assert {result_name(m, 0, lr) for m in ("deca", "decaf") for lr in (1e-3, 1e-2)} <= files
    # DECA ties on accuracy and wins on macro-F1 at 1e-2; DeCAF's best accuracy is at 1e-3
    assert result_name("deca", 1, 1e-2) in files and result_name("decaf", 1, 1e-3) in files
    assert not any(name.startswith(("deca-seed1-lr0.001", "decaf-seed1-lr0.01")) for name in files)
    # ablations: DECA's rate, every seed (the grid seed too); x0 once per seed
    ablations = {name for name in files if name.startswith("ablation-")}
    assert ablations == {result_name(run, seed, 1e-2) for run in ("ablation-without_bma", "ablation-ascending_blocks")
                         for seed in (0, 1)}
    assert {"x0-seed0.json", "x0-seed1.json"} <= files
    assert [job.phase for job in fake_jobs] == ["grid"] * 4 + ["seeds"] * 2 + ["ablations"] * 4
    session = json.loads((suite_dir / SUITE_FILE).read_text())["sessions"][0]
    assert len(session["measured"]) == 10 and session["wall_time_s"] > 0


def test_continuing_a_suite_skips_what_is_there_and_measures_what_is_missing(tmp_path, fake_jobs):
    suite_dir = _run(tmp_path)
    fake_jobs.clear()
    (suite_dir / result_name("ablation-without_bma", 1, 1e-2)).unlink()  # e.g. the job a crash interrupted
    assert _run(tmp_path, into=suite_dir) == suite_dir
    assert [(job.run.name, job.seed) for job in fake_jobs] == [("ablation-without_bma", 1)]
    sessions = json.loads((suite_dir / SUITE_FILE).read_text())["sessions"]
    assert [len(session["measured"]) for session in sessions] == [10, 1]


def test_a_rerun_replaces_results_and_keeps_the_old_ones_aside(tmp_path, fake_jobs):
    suite_dir = _run(tmp_path)
    fake_jobs.clear()
    _run(tmp_path, into=suite_dir, only=["decaf"], phases=["grid"], rerun=True)
    assert [(job.run.name, job.lr) for job in fake_jobs] == [("decaf", 1e-3), ("decaf", 1e-2)]
    assert len(list((suite_dir / "superseded").iterdir())) == 2
    reruns = json.loads((suite_dir / SUITE_FILE).read_text())["reruns"]
    assert [rerun["file"] for rerun in reruns] == [result_name("decaf", 0, 1e-3), result_name("decaf", 0, 1e-2)]


def test_seeds_and_ablations_are_refused_while_a_grid_is_incomplete(tmp_path, fake_jobs):
    suite_dir = _run(tmp_path, phases=["grid"], only=["decaf"])
    with pytest.raises(ConfigError, match=r"lr grid of deca is incomplete \(deca-seed0-lr0.001.json"):
        _run(tmp_path, into=suite_dir, phases=["seeds"])
    with pytest.raises(ConfigError, match="lr grid of deca is incomplete"):
        _run(tmp_path, into=suite_dir, phases=["ablations"])
    _run(tmp_path, into=suite_dir, phases=["seeds"], only=["decaf"])  # DeCAF's own grid is complete
    assert result_name("decaf", 1, 1e-3) in read_results(suite_dir)
    # a new suite refused before measuring anything leaves no directory behind
    with pytest.raises(ConfigError, match="lr grid of deca is incomplete"):
        _run(tmp_path, only=["ablation-without_bma"])
    assert list((tmp_path / "results").iterdir()) == [suite_dir]


def test_a_suite_of_another_preset_or_design_is_refused(tmp_path, fake_jobs):
    suite_dir = _run(tmp_path, phases=["grid"], only=["deca"])
    suite = json.loads((suite_dir / SUITE_FILE).read_text())
    (suite_dir / SUITE_FILE).write_text(json.dumps(suite | {"design": suite["design"] | {"seeds": [0, 1, 2]}}))
    with pytest.raises(ConfigError, match="seeds changed since the suite began"):
        _run(tmp_path, into=suite_dir)
    with pytest.raises(ConfigError, match="holds preset 'quick', not 'full'"):
        quality_run.run_quality_benchmark(FULL, tmp_path, output_dir=tmp_path / "runs", into=suite_dir)


def test_a_grid_may_grow_into_a_suite_but_not_lose_a_rate(tmp_path, fake_jobs):
    # Prepare: DECA's grid measured, then every family gains a higher rate (grids stay the same size)
    suite_dir = _run(tmp_path, phases=["grid"], only=["deca"])
    family = QUICK.run("deca").family
    grown = replace(QUICK, grids={name: (*grid, 1e-1) for name, grid in QUICK.grids.items()})
    # Execute: continue the suite with the grown grid
    quality_run.run_quality_benchmark(grown, tmp_path / "results", output_dir=tmp_path / "runs", into=suite_dir,
                                      phases=["grid"], only=["deca"])
    # Assert: only the new rate was measured; the extension is recorded
    assert [job.lr for job in fake_jobs if job.run.name == "deca"] == [*QUICK.grids[family], 1e-1]
    suite = json.loads((suite_dir / SUITE_FILE).read_text())
    assert suite["design"]["grids"][family] == list(grown.grids[family])
    assert [extension["to"][family] for extension in suite["grid_extensions"]] == [list(grown.grids[family])]
    # a grid that lost a rate is refused: the choice would differ for reasons other than what was measured
    shrunk = replace(QUICK, grids={name: grid[1:] for name, grid in grown.grids.items()})
    with pytest.raises(ConfigError, match="grids changed since the suite began"):
        quality_run.run_quality_benchmark(shrunk, tmp_path / "results", output_dir=tmp_path / "runs", into=suite_dir)


def test_the_command_line_names_unknown_runs_and_a_rerun_without_its_suite(capsys):
    assert main(["quality", "--quick", "--only", "dec_lor"]) == 2
    assert "no such run" in capsys.readouterr().err
    assert main(["quality", "--quick", "--only", "deca", "--rerun"]) == 2
    assert "add both" in capsys.readouterr().err


def test_full_preset_has_every_method_the_grids_and_40_steps_per_client_everywhere(tmp_path):
    methods = [run for run in FULL.runs if run.table == METHODS]
    assert sorted(run.overrides["algorithm"]["type"] for run in methods) == method_names()
    assert FULL.grids == {"adam": ADAM_GRID, "adapter": ADAPTER_GRID, "sgd": SGD_GRID}
    families = {run.name: run.family for run in methods}
    assert {name for name, family in families.items() if family == "adam"} == {
        "deca", "dadam", "local_block_adam", "centralized_adam"}
    assert families["dsgd"] == "sgd" and {families[n] for n in ("dec_lora", "decaf", "dec_adapter")} == {"adapter"}
    assert FULL.seeds == (0, 1, 2) and FULL.validation_size >= 100 and FULL.test_size >= 500
    configs = {run.name: job_config(FULL, Job(run, 0, 1e-4, "grid"), tmp_path) for run in FULL.runs}
    # SmolLM2: 30 one-layer blocks (15 two-layer ones); every run takes 40 steps over the top four layers
    steps = {name: total_steps(30 // config.algorithm.blocks.layers_per_block, config.algorithm)
             for name, config in configs.items()}
    assert set(steps.values()) == {40}, steps
    assert {layer for config in configs.values() for layer in config.algorithm.blocks.fixed_order} <= {
        13, 14, 26, 27, 28, 29}
    # the reference DECA is pinned to the defaults its suite measured (they changed after it)
    assert FULL.run("deca").overrides == {"algorithm": {"type": "deca", "h_signal": "update", "h_scale": "unit_norm"}}
    for config in configs.values():  # no model written; one checkpoint, after the last step, for the scorer
        assert not (config.tracking.save_model or config.tracking.log_model)
        assert not (config.evaluation.before_training or config.evaluation.after_training)
        assert config.checkpoint.enabled and config.checkpoint.every_steps == 40 and config.checkpoint.keep_last == 1
        assert not config.checkpoint.at_block_boundary


TUNING_SUITE = Path(__file__).resolve().parents[2] / "benchmarks/results/quality-20261206T122014Z"


@pytest.mark.skipif(not TUNING_SUITE.is_dir(), reason="the committed tuning suite is not in this checkout")
def test_confirm_preset_measures_fresh_seeds_at_the_rates_the_tuning_suite_chose(tmp_path):
    # the rates are what the committed suite's own choice gives, not typed in by hand
    suite, _ = load_suite(TUNING_SUITE)
    tuned = preset_of(suite["preset"], suite["design"])
    by_file = read_results(TUNING_SUITE)
    assert {name: chosen_lr(tuned, tuned.run(name), by_file) for name in CONFIRMED_RATES} == CONFIRMED_RATES
    assert not set(CONFIRM.seeds) & set(FULL.seeds)
    # DECA is the library's defaults now (no DECA option set); every run shares FULL's setting
    assert CONFIRM.run("deca").overrides == {"algorithm": {"type": "deca"}}
    assert CONFIRM.base == FULL.base and CONFIRM.test_size == FULL.test_size
    assert {run.name for run in CONFIRM.runs} >= {"deca", "dec_lora", "decaf", "dec_adapter", "ablation-without_bma"}
    for run in CONFIRM.runs:
        config = job_config(CONFIRM, Job(run, 3, 1e-3, "grid"), tmp_path)
        assert config.model == job_config(FULL, Job(FULL.run("deca"), 3, 1e-3, "grid"), tmp_path).model


COMMITTED_SUITES = sorted(path.parent for kind in ("quality", "confirm")
                          for path in TUNING_SUITE.parent.glob(f"{kind}-*/{SUITE_FILE}")
                          if json.loads(path.read_text()).get("version") == 2)
PRESETS = {preset.name: preset for preset in (FULL, CONFIRM)}


@pytest.mark.parametrize("suite_dir", COMMITTED_SUITES, ids=lambda path: path.name)
def test_the_presets_still_configure_every_committed_run_as_it_was_measured(suite_dir, tmp_path):
    # a default that changes after a suite must not change what its preset means (its runs pin what they measured)
    preset = PRESETS[json.loads((suite_dir / SUITE_FILE).read_text())["preset"]]
    runs = [result for result in read_results(suite_dir).values() if result["kind"] == "run"]
    assert runs
    for result in runs:
        job = Job(preset.run(result["run"]), result["seed"], result["lr"], result["phase"])
        config = job_config(preset, job, tmp_path).model_dump(mode="json")
        for part in ("model", "data", "partition", "topology", "algorithm"):
            assert config[part] == result["config"][part], (result["run"], result["seed"], part)


def test_a_confirmation_suite_has_its_own_directories_and_section(tmp_path, fake_jobs):
    # Prepare: a quality suite and two confirmations of the quick preset side by side
    confirm = replace(QUICK, kind="confirm")
    results = tmp_path / "results"
    quality = _run(tmp_path, phases=["grid"], only=["deca"])
    first = quality_run.run_quality_benchmark(confirm, results, output_dir=tmp_path / "runs", phases=["grid"],
                                              only=["deca"])
    second = quality_run.run_quality_benchmark(confirm, results, output_dir=tmp_path / "runs", phases=["grid"],
                                               only=["deca"])
    # Assert: each kind has its newest suite, and a confirmation replaces only confirmations
    assert quality.name.startswith("quality-") and first.name.startswith("confirm-")
    assert newest_suite(results) == quality and newest_suite(results, "confirm") == second
    assert earlier_suites(second) == [first] and earlier_suites(quality) == []
    with pytest.raises(NoResultError, match="quality --confirm"):
        newest_suite(tmp_path, "confirm")
    # a quality suite cannot be continued as a confirmation (different preset)
    with pytest.raises(ConfigError, match="holds preset 'quick', not 'confirm'"):
        quality_run.run_quality_benchmark(CONFIRM, results, output_dir=tmp_path / "runs", into=quality)


def test_quick_suite_end_to_end_grid_chosen_lr_seeds_report_and_resume(tmp_path):
    # Execute: every phase of the quick preset for real (tiny model, in-process clients), then the report
    suite_dir = _run(tmp_path)
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# B\n\n<!-- lab:begin -->\nlab\n<!-- lab:end -->\n")
    assert render_newest_quality(tmp_path / "results", markdown) == suite_dir
    results = read_results(suite_dir)
    # Assert: the chosen rate is the best on validation, and the other seeds ran at it
    for run in (run for run in QUICK.runs if run.table == METHODS):
        points, missing = grid_points(QUICK, run, results)
        best = max(points, key=lambda point: (point.accuracy, point.macro_f1))
        assert not missing and chosen_lr(QUICK, run, results) == best.lr
        assert results[result_name(run.name, 1, best.lr)]["lr"] == best.lr
    # every result pairs: predictions per test example, the same held-out set as x0 of its seed
    for result in results.values():
        test = result["scores"]["average"]["test"]
        assert len(test["predictions"]) == len(result["held_out"]["labels"]["test"]) == QUICK.test_size
        assert result["held_out"]["digest"] == results[f"x0-seed{result['seed']}.json"]["held_out"]["digest"]
        if result["kind"] == "run":
            clients = result["scores"]["clients"]
            assert len(clients) == (3 if result["table"] == METHODS else 0)
            assert all(len(client["predictions"]) == QUICK.client_examples for client in clients)
            assert ("validation" in result["scores"]["average"]) == (result["phase"] == "grid")
            assert not (Path(result["run_dir"]) / "checkpoints").exists()  # deleted once scored
    text = markdown.read_text()
    assert "<!-- lab:begin -->\nlab\n<!-- lab:end -->" in text and text.count("<!-- quality:begin -->") == 1
    assert suite_dir.name in text and "**Goal**" in text and (suite_dir / "accuracy.png").stat().st_size > 0
    # Execute: continue the finished suite after losing one result: only that one is measured again
    lost = result_name("ablation-without_bma", 1, chosen_lr(QUICK, QUICK.run("deca"), results))
    (suite_dir / lost).unlink()
    _run(tmp_path, into=suite_dir)
    sessions = json.loads((suite_dir / SUITE_FILE).read_text())["sessions"]
    assert sessions[-1]["measured"] == [lost] and (suite_dir / lost).is_file()
    # Execute: the same results as a confirmation suite render into their own section, beside section Q
    confirmation = shutil.copytree(suite_dir, suite_dir.with_name(suite_dir.name.replace("quality-", "confirm-")))
    record = json.loads((confirmation / SUITE_FILE).read_text())
    (confirmation / SUITE_FILE).write_text(json.dumps(record | {"design": record["design"] | {"kind": "confirm"}}))
    section_q = text.split("<!-- quality:begin -->")[1]
    assert render_newest_quality(tmp_path / "results", markdown, "confirm") == confirmation
    text = markdown.read_text()
    assert text.split("<!-- quality:begin -->")[1].startswith(section_q.split("<!-- quality:end -->")[0])
    confirmed = text.split("<!-- confirm:begin -->\n", 1)[1].split("<!-- confirm:end -->")[0]
    assert confirmed.startswith("## Model quality, confirmed on fresh seeds") and confirmation.name in confirmed
    assert "- a confirmation:" in confirmed and suite_dir.name not in confirmed
