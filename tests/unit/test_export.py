"""The model as a product: a run → ``deca-ray export`` → ``from_pretrained`` → ``deca-ray eval`` gives the
run's own final numbers; LoRA is merged (and kept as a peft adapter); bad input exits 2 writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from deca_ray.cli import main
from deca_ray.config import config_from_dict
from deca_ray.errors import ExportError
from deca_ray.product.assemble import exportable_model
from deca_ray.product.atomic import atomic_directory
from deca_ray.runner import run_experiment
from tests.helpers import tiny_config

TOLERANCE = 1e-4


def _run(output_dir: Path, method: str) -> tuple[Path, dict]:
    config = config_from_dict({
        "name": method, "num_clients": 2,
        "model": {"name": "tiny-llama", "tiny": {"num_layers": 2, "hidden_size": 32, "num_heads": 4,
                                                  "num_kv_heads": 2, "intermediate_size": 64}},
        "data": {"max_train_examples": 20, "test_size": 8, "max_tokens": 48, "body_words": 15, "batch_size": 2},
        "algorithm": {"type": method, "inner_steps": 2, "lr": 1e-2 if method == "decaf" else 1e-3,
                      "blocks": {"layers_per_block": 1}},
        "runtime": {"backend": "local"},
        "evaluation": {"before_training": False, "per_client": False},
        "tracking": {"enabled": False, "output_dir": str(output_dir)},
    })
    result = run_experiment(config)
    return result.run_dir, result.summary["after"]


@pytest.fixture(scope="module")
def deca_run(tmp_path_factory, tokenizer):
    return _run(tmp_path_factory.mktemp("deca"), "deca")


def _eval(target: Path, capsys, *extra: str) -> dict[str, float]:
    capsys.readouterr()
    assert main(["eval", str(target), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"]


def _assert_close(metrics: dict[str, float], after: dict[str, float]) -> None:
    for name in ("accuracy", "macro_f1", "loss"):
        assert metrics[name] == pytest.approx(after[f"avg/{name}"], abs=TOLERANCE), name


def test_export_loads_with_plain_transformers_and_evaluates_to_the_runs_final_numbers(deca_run, tmp_path, capsys):
    # Prepare
    run_dir, after = deca_run
    out = tmp_path / "exported"
    # Execute
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    metrics = _eval(out, capsys)
    # Assert: a plain HF directory (no custom code), the run's own held-out numbers
    files = {path.name for path in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "deca_ray.json"} <= files
    assert not [name for name in files if name.endswith(".py")]
    assert "auto_map" not in json.loads((out / "config.json").read_text())
    assert type(model).__name__ == "LlamaForCausalLM"
    _assert_close(metrics, after)
    _assert_close(_eval(run_dir, capsys), after)  # the run directory itself evaluates the same


def test_a_run_writes_its_own_final_model_equal_to_the_export_of_its_last_checkpoint(deca_run, tmp_path):
    run_dir, _ = deca_run
    out = tmp_path / "exported"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    own, exported = load_file(run_dir / "model" / "model.safetensors"), load_file(out / "model.safetensors")
    assert own.keys() == exported.keys()
    assert all(torch.equal(own[name], exported[name]) for name in own)
    assert not list(run_dir.glob(".model.partial-*"))  # written through a staging directory, renamed


def test_client_model_and_bfloat16_export(deca_run, tmp_path):
    run_dir, _ = deca_run
    out = tmp_path / "c1"
    assert main(["export", str(run_dir), "--model", "client:1", "--dtype", "bfloat16", "--out", str(out)]) == 0
    info = json.loads((tmp_path / "c1" / "deca_ray.json").read_text())
    assert info["source"]["model"] == "client:1" and info["dtype"] == "bfloat16"
    assert all(t.dtype == torch.bfloat16 for t in load_file(tmp_path / "c1" / "model.safetensors").values())


@pytest.mark.parametrize("case", ["no_checkpoint", "bad_client", "bad_choice", "out_not_empty", "not_a_run"])
def test_bad_export_input_exits_2_and_writes_nothing(deca_run, tmp_path, capsys, case):
    # Prepare
    run_dir, _ = deca_run
    out = tmp_path / "out"
    args = ["export", str(run_dir), "--out", str(out)]
    if case == "no_checkpoint":
        bare = tmp_path / "bare-run"
        bare.mkdir()
        (bare / "config.yaml").write_text((run_dir / "config.yaml").read_text())
        args[1] = str(bare)
    elif case == "bad_client":
        args += ["--model", "client:9"]
    elif case == "bad_choice":
        args += ["--model", "best"]
    elif case == "out_not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    else:
        args[1] = str(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    # Execute
    code = main(args)
    # Assert
    assert code == 2
    assert "error:" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before


def test_lora_run_is_merged_and_also_written_as_a_peft_adapter(tmp_path, tokenizer, capsys):
    # Prepare: DeCAF (LoRA, and its own network average: the re-factorised mean product)
    run_dir, after = _run(tmp_path / "runs", "decaf")
    out = tmp_path / "merged"
    # Execute
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    metrics = _eval(out, capsys)
    # Assert: plain Linear weights (no lora names), the run's numbers, and a loadable adapter
    names = load_file(out / "model.safetensors").keys()
    assert not [name for name in names if "lora" in name or "base_layer" in name]
    _assert_close(metrics, after)
    from peft import PeftModel

    from deca_ray.models import load_model

    config = config_from_dict(json.loads((out / "deca_ray.json").read_text())["config"])
    base = load_model(config.model, len(tokenizer), seed=config.seed)
    with_adapter = PeftModel.from_pretrained(base, out / "peft_adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        assert torch.allclose(with_adapter(ids).logits, merged(ids).logits, atol=1e-5)


def test_bottleneck_adapters_are_refused_with_what_to_do_instead(tokenizer):
    config = tiny_config(algorithm={"type": "dec_adapter"})
    with pytest.raises(ExportError, match="cannot be merged.*deca-ray eval RUN_DIR"):
        exportable_model(config, {}, len(tokenizer))


def test_atomic_directory_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "half.bin").write_bytes(b"1")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as staging:
        (staging / "whole.bin").write_bytes(b"1")
    assert [path.name for path in target.iterdir()] == ["whole.bin"]


def test_generate_is_greedy_by_default_and_seeded_sampling_repeats(deca_run, capsys):
    run_dir, _ = deca_run
    model_dir = run_dir / "model"

    def generate(*extra: str) -> str:
        capsys.readouterr()
        assert main(["generate", str(model_dir), "--prompt", "Which topic?", "--max-new-tokens", "6", *extra]) == 0
        return capsys.readouterr().out

    assert generate() == generate()
    assert generate("--temperature", "1.0", "--seed", "3") == generate("--temperature", "1.0", "--seed", "3")
    assert main(["generate", str(run_dir), "--prompt", "x"]) == 2  # a run directory is not a model directory


def test_eval_on_other_data_needs_no_partition_of_it(deca_run, tmp_path, capsys):
    run_dir, _ = deca_run
    data = tmp_path / "small.jsonl"
    data.write_text("".join(json.dumps({"text": f"text number {i}", "label": "ab"[i % 2]}) + "\n" for i in range(6)))
    capsys.readouterr()
    # Execute: 6 rows, 4 held out: far too few to give the run's clients a Dirichlet share each
    code = main(["eval", str(run_dir / "model"), "--data", str(data), "--set", "data.test_size=4",
                 "--set", "data.label_words=null", "--json"])
    # Assert
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["examples"] == 4 and set(result["metrics"]) == {"accuracy", "macro_f1", "loss"}
