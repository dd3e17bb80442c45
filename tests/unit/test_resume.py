"""Stop a run mid-way, resume it, and get bit-identical parameters (local backend, tiny model)."""

from __future__ import annotations

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
