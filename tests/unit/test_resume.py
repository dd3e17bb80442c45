"""Stop a run mid-way, resume it, and get bit-identical parameters (local backend, tiny model)."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from deca_ray.config import config_from_dict
from deca_ray.runner import run_experiment


def _config(output_dir, method="deca"):
    return config_from_dict({
        "name": "resume",
        "num_clients": 3,
        "model": {"name": "tiny-llama", "tiny": {"num_layers": 4, "hidden_size": 32, "num_heads": 4,
                                                  "num_kv_heads": 2, "intermediate_size": 64}},
        "data": {"max_train_examples": 60, "test_size": 10, "max_tokens": 48, "body_words": 15, "batch_size": 2},
        "algorithm": {"type": method, "inner_steps": 3, "lr": 1e-3, "blocks": {"layers_per_block": 2}},
        "runtime": {"backend": "local"},
        "checkpoint": {"every_steps": 2, "keep_last": 10},
        "evaluation": {"before_training": False, "per_client": False},
        "tracking": {"enabled": False, "output_dir": str(output_dir)},
    })


def _crash_after(step: int):
    def on_step(metrics):
        if metrics.position.global_step == step:
            raise RuntimeError("simulated crash")
    return on_step


def _final_parameters(run_dir):
    final = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    return final.name, {i: load_file(str(final / f"client-{i:04d}.safetensors")) for i in range(3)}


@pytest.mark.parametrize("method", ["deca", "dec_lora", "dadam"])
def test_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tokenizer, tmp_path, method):
    # Prepare: an uninterrupted run, and a run that dies after global step 3 (last checkpoint: step 2)
    uninterrupted = run_experiment(_config(tmp_path / "a", method))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_experiment(_config(tmp_path / "b", method), on_step=_crash_after(3))
    [crashed_dir] = (tmp_path / "b").iterdir()
    # Execute
    resumed = run_experiment(_config(tmp_path / "b", method), resume_dir=crashed_dir)
    # Assert: it continued (not restarted) and ends exactly where the uninterrupted run ended
    assert [m.position.global_step for m in resumed.history] == [3, 4, 5]
    assert resumed.summary["resumed_from"].endswith("step-00000003")
    name_a, params_a = _final_parameters(uninterrupted.run_dir)
    name_b, params_b = _final_parameters(crashed_dir)
    assert name_a == name_b == "step-00000006"
    for client in range(3):
        assert params_a[client].keys() == params_b[client].keys()
        for key, value in params_a[client].items():
            assert (value == params_b[client][key]).all(), (client, key)
    # ... and its history, summary and curves cover the whole run: steps 0-3 from before the crash included
    assert _history_steps(crashed_dir) == list(range(6))
    assert resumed.summary["steps"] == 6 and (crashed_dir / "loss_curves.png").is_file()


def _history_steps(run_dir):
    return [json.loads(line)["global_step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_crash_and_resume_log_every_step_to_mlflow_exactly_once(tokenizer, tmp_path):
    # Prepare: a tracked run that dies after step 3 (MLflow holds 0-3; the checkpoint is after step 2)
    config = _config(tmp_path).model_copy(update={"tracking": _config(tmp_path).tracking.model_copy(
        update={"enabled": True, "save_model": False, "system_metrics": False})})
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_experiment(config, on_step=_crash_after(3))
    [run_dir] = tmp_path.glob("resume-*")
    # Execute
    resumed = run_experiment(config, resume_dir=run_dir)
    # Assert: step 3 ran twice but is logged once; the history file agrees
    from mlflow.tracking import MlflowClient

    history = MlflowClient(resumed.tracking_uri).get_metric_history(resumed.run_id, "loss/mean")
    assert sorted(metric.step for metric in history) == list(range(6))
    assert _history_steps(run_dir) == list(range(6))


def test_a_complete_run_extends_with_more_rounds_like_a_longer_run(tokenizer, tmp_path):
    # Prepare: a complete 1-round run, and a 2-round run for comparison
    one_round, two_rounds = _config(tmp_path / "a"), _config(tmp_path / "b")
    two_rounds.algorithm.rounds = 2
    longer = run_experiment(two_rounds)
    complete = run_experiment(one_round)
    # Execute: resume the complete run asking for a second round
    extended_config = _config(tmp_path / "a")
    extended_config.algorithm.rounds = 2
    extended = run_experiment(extended_config, resume_dir=complete.run_dir)
    # Assert: it continued at step 6 and ends where the 2-round run ends, with one 12-step history
    assert [m.position.global_step for m in extended.history] == list(range(6, 12))
    assert _history_steps(complete.run_dir) == list(range(12)) and extended.summary["steps"] == 12
    name_a, params_a = _final_parameters(longer.run_dir)
    name_b, params_b = _final_parameters(complete.run_dir)
    assert name_a == name_b == "step-00000012"
    for client in range(3):
        for key, value in params_a[client].items():
            if not key.startswith("rng/"):
                assert (value == params_b[client][key]).all(), (client, key)
