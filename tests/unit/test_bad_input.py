"""README's bad-input table: each row exits 2 with a message saying what to change, and writes nothing.

Every row runs the real CLI in-process (``deca-ray run ...``) with MLflow tracking on, from a
working directory inside the test's folder, with the model cache in that folder too. Afterwards
nothing under the folder may have changed (no run directory, no ``mlflow.db``, no cache entry,
nothing in the working directory) and no process may be left behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from deca_ray.cli import main
from deca_ray.config import ModelConfig

TINY = """
name: bad
num_clients: 2
model: {name: tiny-llama, tiny: {num_layers: 2, hidden_size: 32, num_heads: 4, num_kv_heads: 2, intermediate_size: 64}}
data: {max_tokens: 48, body_words: 10, batch_size: 2, test_size: 2}
partition: {type: iid}
algorithm: {inner_steps: 1, lr: 1.0e-3, blocks: {layers_per_block: 1}}
runtime: {backend: local}
evaluation: {before_training: false, after_training: false}
tracking: {enabled: true, save_model: false, system_metrics: false}
checkpoint: {keep_last: 5}
"""


@dataclass(frozen=True)
class Row:
    """Extra CLI arguments, a fragment the error must contain, environment changes (None: unset)."""

    args: tuple[str, ...]
    fragment: str
    env: dict[str, str | None] = field(default_factory=dict)
    config: str = "bad.yaml"
    """The config file passed (a name in the test folder)."""


def _files(tmp: Path) -> None:
    """The inputs the rows point at."""
    (tmp / "good.jsonl").write_text("".join(json.dumps({"text": f"text {i}", "label": "ab"[i % 2]}) + "\n"
                                            for i in range(12)))
    (tmp / "no_label.jsonl").write_text('{"text": "a", "topic": "x"}\n' * 4)
    (tmp / "empty_label.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": ""}\n')
    (tmp / "garbage.json").write_bytes(b"\x00\xff{ not json")
    (tmp / "header_only.csv").write_text("text,label\n")
    (tmp / "empty.jsonl").write_bytes(b"")
    (tmp / "empty_list.json").write_text("[]")
    (tmp / "not_utf8.yaml").write_bytes(TINY.encode() + b"name: caf\xe9\n")
    (tmp / "duplicate.yaml").write_text(TINY.replace("num_clients: 2", "num_clients: 2\nnum_clients: 3"))
    (tmp / "a_file").write_text("not a directory")
    (tmp / "no_weights").mkdir()
    (tmp / "no_weights" / "config.json").write_text("{}")
    (tmp / "broken_model").mkdir()
    (tmp / "broken_model" / "config.json").write_text("{ not json")
    (tmp / "broken_model" / "model.safetensors").write_bytes(b"")


ROWS: dict[str, Row] = {
    "unknown config key": Row(("--set", "algorithm.lrr=1"), "did you mean 'lr'"),
    "wrong type": Row(("--set", "num_clients=many"), "num_clients"),
    "alpha <= 0": Row(("--set", "partition.type=dirichlet", "--set", "partition.alpha=0"), "partition.alpha"),
    "infinite number": Row(("--set", "algorithm.lr=.inf"), "algorithm.lr: Input should be a finite number"),
    "seed out of range": Row(("--set", "seed=-1"), "seed: Input should be greater than or equal to 0"),
    "run name that is a path": Row(("--set", "name=../../x"), "one plain path component"),
    "more clients than examples": Row(("--set", "data.source={tmp}/good.jsonl", "--set", "num_clients=11"),
                                      "num_clients=11 exceeds the 10 training examples"),
    "client left with no data": Row(("--set", "data.source={tmp}/good.jsonl", "--set", "num_clients=4",
                                     "--set", "partition.type=dirichlet", "--set", "partition.alpha=0.01",
                                     "--set", "partition.min_per_client=3", "--set", "partition.max_resamples=3"),
                                    "raise partition.alpha"),
    "batch larger than a shard": Row(("--set", "data.source={tmp}/good.jsonl", "--set", "data.batch_size=100000"),
                                     "exceeds the smallest client shard (client 0 holds 5 training examples)"),
    "disconnected custom graph": Row(("--set", "num_clients=4", "--set", "topology.type=custom",
                                      "--set", "topology.edges=[[0,1],[2,3]]"), "disconnected"),
    "custom graph names a missing client": Row(("--set", "topology.type=custom", "--set", "topology.edges=[[0,7]]"),
                                               "names client 7"),
    "config file not UTF-8": Row((), "is not UTF-8 text", config="not_utf8.yaml"),
    "config path is a directory": Row((), "is a directory; pass a path to a YAML file", config="no_weights"),
    "duplicate config key": Row((), "the key 'num_clients' appears twice", config="duplicate.yaml"),
    "bad YAML in --set": Row(("--set", "topology.edges=[[0,1]"), "the value is not valid YAML"),
    "missing data file": Row(("--set", "data.source={tmp}/nope.jsonl"), "no such file"),
    "unreadable data file": Row(("--set", "data.source={tmp}/garbage.json"), "cannot read"),
    "header-only CSV": Row(("--set", "data.source={tmp}/header_only.csv"), "holds a header and no rows"),
    "empty data file": Row(("--set", "data.source={tmp}/empty.jsonl"), "holds no rows"),
    "data file with an empty list": Row(("--set", "data.source={tmp}/empty_list.json"), "holds no rows"),
    "data file without the label field": Row(("--set", "data.source={tmp}/no_label.jsonl"), "data.label_field"),
    "empty label": Row(("--set", "data.source={tmp}/empty_label.jsonl"), "row 1"),
    "unknown model, hub unreachable": Row(("--set", "model.name=nobody/no-such-model"), "cannot load"),
    "model folder without weights": Row(("--set", "model.name={tmp}/no_weights"), "the folder lacks weights"),
    "broken model folder": Row(("--set", "model.name={tmp}/broken_model"), "from the folder"),
    "block the model does not have": Row(("--set", "algorithm.blocks.order=fixed",
                                          "--set", "algorithm.blocks.fixed_order=[99]"),
                                         "fixed_order names block(s) [99]"),
    "unknown method": Row(("--set", "algorithm.type=dec-lora"), "did you mean 'dec_lora'"),
    "LoRA targets no module": Row(("--set", "algorithm.type=dec_lora", "--set", "algorithm.lora.target_modules=[qkv]"),
                                  "algorithm.lora.target_modules"),
    "LoRA rank above a module's width": Row(("--set", "algorithm.type=decaf", "--set", "algorithm.lora.rank=4096"),
                                            "lower algorithm.lora.rank"),
    "output directory is a file": Row(("--set", "tracking.output_dir={tmp}/a_file/runs"), "is a file, not a directory"),
    "output directory not writable": Row(("--set", "tracking.output_dir=/sys/deca-ray-runs"), "cannot write in /sys"),
    "unusable HOME": Row(("--set", "model.cache_dir=null"), "the cache directory",
                         env={"HOME": "/sys/deca-ray-home", "DECA_RAY_CACHE": None}),
    "unusable cache directory": Row(("--set", "model.cache_dir=null"), "the cache directory",
                                    env={"DECA_RAY_CACHE": "/sys/deca-ray-cache"}),
    "misspelt tracking URI": Row(("--set", "tracking.tracking_uri=htp:/x"), "unknown scheme 'htp'"),
    "unreachable tracking server": Row(("--set", "tracking.tracking_uri=http://127.0.0.1:1"),
                                       "no MLflow server answers at 127.0.0.1:1"),
    "a Ray job's store in its working directory": Row(("--set", "tracking.tracking_uri=sqlite:///runs/mlflow.db"),
                                                       "lies in the job's working directory",
                                                       env={"RAY_JOB_ID": "02000000"}),
    "unreachable Ray address": Row(("--set", "runtime.backend=ray", "--set", "runtime.address=127.0.0.1:1",
                                    "--set", "runtime.connect_timeout_s=5"), "cannot reach the Ray cluster"),
}


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``directory``, symlinks not followed."""
    entries: dict[str, bytes | None] = {}
    for root, folders, files in os.walk(directory):
        for name in folders:
            entries[os.path.relpath(os.path.join(root, name), directory)] = None
        for name in files:
            path = Path(root, name)
            entries[os.path.relpath(path, directory)] = path.read_bytes() if not path.is_symlink() else b"->"
    return entries


def children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.fixture()
def workspace(tokenizer, tmp_path, monkeypatch):
    """The test folder: inputs, a model cache holding (a link to) the converted SmolLM2, a working directory."""
    from deca_ray.models import packaged_smollm2_dir

    _files(tmp_path)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "smollm2-135m-instruct").symlink_to(packaged_smollm2_dir(ModelConfig()))
    (tmp_path / "bad.yaml").write_text(TINY)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def run_cli(tmp: Path, config: str, *args: str) -> int:
    return main(["run", str(tmp / config), "--no-progress", "--set", f"tracking.output_dir={tmp / 'runs'}",
                 "--set", f"model.cache_dir={tmp / 'cache'}", *args])


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_exits_2_says_what_to_change_and_leaves_no_trace(name, workspace, monkeypatch, capsys):
    # Prepare
    row = ROWS[name]
    for key, value in row.env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    before, processes = snapshot(workspace), children()
    # Execute
    code = run_cli(workspace, row.config, *(arg.format(tmp=workspace) for arg in row.args))
    # Assert
    assert code == 2
    assert row.fragment in capsys.readouterr().err
    assert snapshot(workspace) == before  # no run directory, no mlflow.db, no cache entry, nothing in the cwd
    assert children() <= processes


# ---------------------------------------------------------------------------------------------- resumes


def _corrupt_manifest(run: Path) -> None:
    (_latest(run) / "manifest.json").write_text("{ truncated")


def _change_config(run: Path) -> None:
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("lr: 0.001", "lr: 0.002"))


def _mistype_manifest(run: Path) -> None:
    manifest = json.loads((_latest(run) / "manifest.json").read_text())
    manifest |= {"global_step": "three", "clients": [manifest["clients"]["0"]]}
    (_latest(run) / "manifest.json").write_text(json.dumps(manifest))


def _reshape_tensors(run: Path) -> None:
    from safetensors.torch import load_file, save_file

    file = _latest(run) / "client-0000.safetensors"
    tensors = load_file(str(file))
    save_file({name: (value[..., :1].contiguous() if name.startswith("param/") else value)
               for name, value in tensors.items()}, str(file))


def _forget_a_client(run: Path) -> None:
    manifest = json.loads((_latest(run) / "manifest.json").read_text())
    del manifest["clients"]["1"]
    (_latest(run) / "manifest.json").write_text(json.dumps(manifest))


def _latest(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step-*"))[-1]


RESUME_ROWS = {
    "resume a complete run": (None, "the run is complete"),
    "corrupted checkpoint": (_corrupt_manifest, "corrupted"),
    "checkpoint from a different config": (_change_config, "different configuration"),
    "checkpoint manifest of the wrong types": (_mistype_manifest, "is malformed"),
    "checkpoint with wrong tensor shapes": (_reshape_tensors, "does not fit this model"),
    "checkpoint of other clients": (_forget_a_client, "belongs to a run with other clients"),
}


@pytest.fixture(scope="module")
def finished(tokenizer, tmp_path_factory):
    """A short finished, tracked run (MLflow status FINISHED) in a workspace like the rows'."""
    from deca_ray.models import packaged_smollm2_dir

    tmp = tmp_path_factory.mktemp("finished")
    (tmp / "cache").mkdir()
    (tmp / "cache" / "smollm2-135m-instruct").symlink_to(packaged_smollm2_dir(ModelConfig()))
    (tmp / "bad.yaml").write_text(TINY.replace("inner_steps: 1", "inner_steps: 2"))
    assert run_cli(tmp, "bad.yaml") == 0
    return tmp


def _mlflow_status(workspace: Path) -> str:
    from mlflow.tracking import MlflowClient

    [run_dir] = (workspace / "runs").glob("bad-*")
    run_id = json.loads((run_dir / "summary.json").read_text())["mlflow_run_id"]
    return MlflowClient(f"sqlite:///{workspace / 'runs' / 'mlflow.db'}").get_run(run_id).info.status


@pytest.mark.parametrize("name", list(RESUME_ROWS))
def test_rejected_resume_exits_2_and_changes_neither_the_run_nor_its_mlflow_status(
    name, finished, tmp_path, monkeypatch, capsys
):
    # Prepare: a copy of the finished run; all but the first row make it look stopped (no summary)
    import shutil

    workspace = tmp_path / "w"
    shutil.copytree(finished, workspace, symlinks=True)
    [run_dir] = (workspace / "runs").glob("bad-*")
    status = _mlflow_status(workspace)
    mutate, fragment = RESUME_ROWS[name]
    if mutate is not None:
        summary = (run_dir / "summary.json").read_bytes()
        (run_dir / "summary.json").unlink()
        mutate(run_dir)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # resuming from another directory writes nothing there
    before, processes = snapshot(workspace), children()
    # Execute
    code = main(["run", "--resume", str(run_dir), "--no-progress"])
    # Assert
    assert code == 2
    assert fragment in capsys.readouterr().err
    assert snapshot(workspace) == before
    assert not any((tmp_path / "elsewhere").iterdir())
    assert children() <= processes
    if mutate is not None:
        (run_dir / "summary.json").write_bytes(summary)
    assert _mlflow_status(workspace) == status == "FINISHED"


def test_resume_of_a_missing_directory_says_so(capsys, tmp_path):
    assert main(["run", "--resume", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_resume_from_another_directory_writes_only_into_the_run_and_its_store(workspace, tmp_path, monkeypatch):
    # Prepare: a finished run whose config.yaml holds a relative output directory (runs/, from workspace/cwd)
    assert main(["run", str(workspace / "bad.yaml"), "--no-progress", "--set", "tracking.output_dir=runs",
                 "--set", f"model.cache_dir={workspace / 'cache'}"]) == 0
    [run_dir] = (workspace / "cwd" / "runs").glob("bad-*")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    # Execute: extend it by a round from another directory
    assert main(["run", "--resume", str(run_dir), "--no-progress", "--set", "algorithm.rounds=2"]) == 0
    # Assert: nothing appeared here; the run's own store got the new steps
    from mlflow.tracking import MlflowClient

    assert not any((tmp_path / "elsewhere").iterdir())
    run_id = json.loads((run_dir / "summary.json").read_text())["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{workspace / 'cwd' / 'runs' / 'mlflow.db'}")
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss/mean")) == [0, 1, 2, 3]
    assert client.get_run(run_id).info.status == "FINISHED"
