"""An instruction-tuning run logs greedy answers to fixed held-out prompts, before (x0) and after (x̄)
training, as one MLflow table; classification runs log none."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from transformers import AutoModelForCausalLM

from deca_ray.config import config_from_dict
from deca_ray.runner import run_experiment
from deca_ray.samples import table_file

PROMPTS = 3


def _instruction_file(tmp_path: Path) -> Path:
    path = tmp_path / "chat.jsonl"
    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"{2 * i}."} for i in range(24)]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def _config(tmp_path: Path, data: dict) -> dict:
    return {
        "name": "samples", "num_clients": 2,
        "model": {"name": "tiny-llama", "tiny": {"num_layers": 2, "hidden_size": 32, "num_heads": 4,
                                                  "num_kv_heads": 2, "intermediate_size": 64}},
        "data": {"max_tokens": 48, "batch_size": 2, **data},
        "partition": {"type": "iid"},
        "algorithm": {"inner_steps": 2, "lr": 1e-2, "blocks": {"layers_per_block": 1}},
        "runtime": {"backend": "local"},
        "evaluation": {"per_client": False, "sample_generations": PROMPTS, "sample_max_new_tokens": 6},
        "tracking": {"output_dir": str(tmp_path / "runs"), "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
    }


def _table(result) -> dict[str, list]:
    """Both tables' rows, before then after, by column."""
    client = MlflowClient(result.tracking_uri)
    names = [item.path for item in client.list_artifacts(result.run_id)]
    columns: dict[str, list] = {}
    for name in (table_file("before"), table_file("after")):
        if name in names:
            table = json.loads(Path(client.download_artifacts(result.run_id, name)).read_text())
            for i, column in enumerate(table["columns"]):
                columns.setdefault(column, []).extend(row[i] for row in table["data"])
    return columns


def test_instruction_run_logs_before_and_after_answers_of_its_own_models(tmp_path):
    source = _instruction_file(tmp_path)
    result = run_experiment(config_from_dict(_config(tmp_path, {"source": str(source), "task": "instruction",
                                                                "test_size": 4})))
    table = _table(result)

    assert table["when"] == ["before"] * PROMPTS + ["after"] * PROMPTS
    assert table["prompt"][:PROMPTS] == table["prompt"][PROMPTS:]  # the same fixed prompts both times
    # "after" is x̄: the run's own exported model answers the first prompt the same way, greedily
    model = AutoModelForCausalLM.from_pretrained(result.summary["model_dir"]).eval()
    from deca_ray.experiment import prepare_inputs

    inputs = prepare_inputs(config_from_dict(_config(tmp_path, {"source": str(source), "task": "instruction",
                                                                "test_size": 4})))
    example = inputs.data.test[0]
    prompt = torch.tensor([example.input_ids[: example.num_prompt_tokens]])
    with torch.inference_mode():
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=6,
                                eos_token_id=example.input_ids[-1], pad_token_id=inputs.pad_token_id)
    expected = inputs.tokenizer.decode(output[0, prompt.shape[1]:], skip_special_tokens=True)
    assert table["generation"][PROMPTS] == expected
    assert table["reference"][0] == inputs.tokenizer.decode(example.input_ids[example.num_prompt_tokens:],
                                                            skip_special_tokens=True)


def test_classification_run_logs_no_sample_table(tmp_path):
    result = run_experiment(config_from_dict(_config(tmp_path, {"max_train_examples": 20, "test_size": 8,
                                                                "body_words": 15})))

    assert _table(result) == {}
    assert MlflowClient(result.tracking_uri).get_run(result.run_id).info.status == "FINISHED"
