"""README's bad-input table: each row exits 2 with a message saying what to change, writing nothing.

Every row runs the real CLI in-process (``deca-ray run ...``); the output directory must
stay free of run directories afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deca_ray.cli import main

TINY = """
name: bad
num_clients: 2
model: {name: tiny-llama, tiny: {num_layers: 2, hidden_size: 32, num_heads: 4, num_kv_heads: 2, intermediate_size: 64}}
data: {max_tokens: 48, body_words: 10, batch_size: 2, test_size: 2}
partition: {type: iid}
algorithm: {inner_steps: 1, lr: 1.0e-3, blocks: {layers_per_block: 1}}
runtime: {backend: local}
evaluation: {before_training: false, after_training: false}
tracking: {enabled: false}
checkpoint: {keep_last: 5}
"""


def _rows(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Row name → (extra CLI arguments, a fragment the error must contain)."""
    good = tmp / "good.jsonl"
    good.write_text("".join(json.dumps({"text": f"text {i}", "label": "ab"[i % 2]}) + "\n" for i in range(12)))
    no_label = tmp / "no_label.jsonl"
    no_label.write_text('{"text": "a", "topic": "x"}\n' * 4)
    empty_label = tmp / "empty_label.jsonl"
    empty_label.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": ""}\n')
    garbage = tmp / "garbage.json"
    garbage.write_bytes(b"\x00\xff{ not json")
    return {
        "unknown config key": (["--set", "algorithm.lrr=1"], "did you mean 'lr'"),
        "wrong type": (["--set", "num_clients=many"], "num_clients"),
        "alpha <= 0": (["--set", "partition.type=dirichlet", "--set", "partition.alpha=0"], "partition.alpha"),
        "more clients than examples": (["--set", f"data.source={good}", "--set", "num_clients=11"],
                                       "num_clients=11 exceeds the 10 training examples"),
        "client left with no data": (["--set", f"data.source={good}", "--set", "num_clients=4",
                                      "--set", "partition.type=dirichlet", "--set", "partition.alpha=0.01",
                                      "--set", "partition.min_per_client=3", "--set", "partition.max_resamples=3"],
                                     "raise partition.alpha"),
        "disconnected custom graph": (["--set", "num_clients=4", "--set", "topology.type=custom",
                                       "--set", "topology.edges=[[0,1],[2,3]]"], "disconnected"),
        "custom graph names a missing client": (["--set", "topology.type=custom", "--set", "topology.edges=[[0,7]]"],
                                                "names client 7"),
        "missing data file": (["--set", f"data.source={tmp / 'nope.jsonl'}"], "no such file"),
        "unreadable data file": (["--set", f"data.source={garbage}"], "cannot read"),
        "data file without the label field": (["--set", f"data.source={no_label}"], "data.label_field"),
        "empty label": (["--set", f"data.source={empty_label}"], "row 1"),
        "unknown model, hub unreachable": (["--set", "model.name=nobody/no-such-model"], "cannot load"),
        "unknown method": (["--set", "algorithm.type=dec-lora"], "did you mean 'dec_lora'"),
        "LoRA targets no module": (["--set", "algorithm.type=dec_lora", "--set", "algorithm.lora.target_modules=[qkv]"],
                                   "algorithm.lora.target_modules"),
        "LoRA rank above a module's width": (["--set", "algorithm.type=decaf", "--set", "algorithm.lora.rank=4096"],
                                             "lower algorithm.lora.rank"),
    }


ROW_NAMES = [
    "unknown config key", "wrong type", "alpha <= 0", "more clients than examples", "client left with no data",
    "disconnected custom graph", "custom graph names a missing client", "missing data file",
    "unreadable data file", "data file without the label field", "empty label", "unknown model, hub unreachable",
    "unknown method", "LoRA targets no module", "LoRA rank above a module's width",
]


@pytest.mark.parametrize("row", ROW_NAMES)
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(row, tokenizer, tmp_path, capsys):
    # Prepare
    config = tmp_path / "bad.yaml"
    config.write_text(TINY)
    output = tmp_path / "runs"
    extra, fragment = _rows(tmp_path)[row]
    # Execute
    code = main(["run", str(config), "--no-progress", "--set", f"tracking.output_dir={output}", *extra])
    # Assert
    assert code == 2
    assert fragment in capsys.readouterr().err
    assert not output.exists() or not any(output.iterdir())


@pytest.fixture()
def finished_run(tokenizer, tmp_path):
    """A short finished run with checkpoints, to resume from."""
    config = tmp_path / "ok.yaml"
    config.write_text(TINY)
    assert main(["run", str(config), "--no-progress", "--set", f"tracking.output_dir={tmp_path / 'runs'}"]) == 0
    [run_dir] = (tmp_path / "runs").iterdir()
    return run_dir


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_corrupted_checkpoint_is_refused(finished_run, capsys):
    latest = sorted((finished_run / "checkpoints").glob("step-*"))[-1]
    (latest / "manifest.json").write_text("{ truncated")
    before = _snapshot(finished_run)
    assert main(["run", "--resume", str(finished_run), "--no-progress"]) == 2
    assert "corrupted" in capsys.readouterr().err
    assert _snapshot(finished_run) == before


def test_checkpoint_from_a_different_config_is_refused(finished_run, capsys):
    config = finished_run / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.001", "lr: 0.002"))
    before = _snapshot(finished_run)
    assert main(["run", "--resume", str(finished_run), "--no-progress"]) == 2
    assert "different configuration" in capsys.readouterr().err
    assert _snapshot(finished_run) == before
