"""`python -m benchmarks quality --quick` end to end: one result file per run, a suite record, a rendered section."""

from __future__ import annotations

import json

from benchmarks.__main__ import main
from benchmarks.quality.presets import FULL, QUICK
from benchmarks.quality.report import render_newest_quality
from benchmarks.quality.run import SUITE_FILE, run_config, run_quality_benchmark
from deca_ray.methods import method_names
from deca_ray.schedule import total_steps


def test_quick_quality_benchmark_writes_a_traceable_file_per_run_and_renders_them(tokenizer, tmp_path):
    # Execute
    suite_dir = run_quality_benchmark(QUICK, tmp_path / "results", output_dir=tmp_path / "runs")
    used = render_newest_quality(tmp_path / "results", tmp_path / "BENCHMARKS.md")
    # Assert: every run has its file with provenance, the exact config, metrics and curves
    suite = json.loads((suite_dir / SUITE_FILE).read_text())
    assert used == suite_dir and suite["runs"] == [run.name for run in QUICK.runs]
    for run in QUICK.runs:
        result = json.loads((suite_dir / f"{run.name}.json").read_text())
        assert result["metadata"]["git"]["commit"] and result["metadata"]["machine"]["cpu_cores"] >= 1
        assert result["config"]["algorithm"]["type"] == run.overrides.get("algorithm", {}).get("type", "deca")
        assert result["seed"] == result["config"]["seed"]
        assert len(result["curves"]["mean_loss"]) == result["metrics"]["steps_per_client"] > 0
        assert result["metrics"]["after"]["avg/accuracy"] >= 0 and result["mlflow"]["run_id"]
    central = json.loads((suite_dir / "centralized_adam.json").read_text())
    assert central["metrics"]["num_clients"] == 1 and central["metrics"]["bytes_sent_per_client"] == 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.count("<!-- quality:begin -->") == 1 and suite_dir.name in text

    # Execute: re-run one run into the finished suite (what a fix to one method needs)
    first = json.loads((suite_dir / "decaf.json").read_text())
    run_quality_benchmark(QUICK, tmp_path / "results", output_dir=tmp_path / "runs",
                          only=lambda run: run.name == "decaf", into=suite_dir)
    render_newest_quality(tmp_path / "results", tmp_path / "BENCHMARKS.md")
    # Assert: the old file is kept aside, the new one replaces it, and the suite and the text say so
    [superseded] = (suite_dir / "superseded").iterdir()
    assert json.loads(superseded.read_text())["mlflow"]["run_id"] == first["mlflow"]["run_id"]
    assert json.loads((suite_dir / "decaf.json").read_text())["mlflow"]["run_id"] != first["mlflow"]["run_id"]
    rerun = json.loads((suite_dir / SUITE_FILE).read_text())["reruns"]
    assert [entry["run"] for entry in rerun] == ["decaf"]
    assert "re-run after the suite: `decaf`" in (tmp_path / "BENCHMARKS.md").read_text()


def test_every_method_of_the_registry_is_in_the_full_preset_with_the_same_steps(tmp_path):
    methods = [run for run in FULL.runs if run.table == "methods"]
    assert sorted(run.overrides["algorithm"]["type"] for run in methods) == method_names()
    # SmolLM2 has 15 two-layer blocks; every run visits its fixed blocks for the same number of steps
    steps = {run.name: total_steps(15, run_config(FULL, run, tmp_path).algorithm) for run in FULL.runs}
    assert len(set(steps.values())) == 1, steps



def test_benchmark_runs_neither_write_nor_log_a_model(tmp_path):
    configs = [run_config(preset, run, tmp_path) for preset in (FULL, QUICK) for run in preset.runs]
    assert not any(config.tracking.save_model or config.tracking.log_model for config in configs)

def test_only_names_an_unknown_run_clearly(capsys):
    assert main(["quality", "--quick", "--only", "dec_lor"]) == 2
    assert "no such run" in capsys.readouterr().err
