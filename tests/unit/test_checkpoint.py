"""Checkpoints: exact client restore, atomic commit and rotation, clear errors on bad files."""

from __future__ import annotations

import json

import pytest
import torch

from deca_ray import checkpoint
from deca_ray.checkpoint import CheckpointError
from deca_ray.runtime.group import LocalClientGroup
from tests.helpers import tiny_client, tiny_config


def _steps(client, count: int) -> None:
    for _ in range(count):
        client.half_step()
        client.mix([], self_weight=1.0)


@pytest.mark.parametrize(("lifetime", "dtype"), [("per_activation", "float32"), ("persistent", "float32"),
                                                  ("per_activation", "bfloat16")])
def test_restored_client_continues_bit_identically(lifetime, dtype):
    # Prepare: train, checkpoint mid-block, train on; a fresh client restored from the checkpoint trains on too.
    config = tiny_config(algorithm={"moment_lifetime": lifetime}, model={"dtype": dtype})
    original = tiny_client(config)
    original.begin_block(0)
    _steps(original, 2)
    original.begin_block(1)
    _steps(original, 1)
    tensors, meta = original.checkpoint_state()
    tensors = {name: value.clone() for name, value in tensors.items()}
    _steps(original, 2)
    # Execute
    restored = tiny_client(config)
    restored.restore_state(tensors, json.loads(json.dumps(meta)))  # metadata goes through JSON on disk
    _steps(restored, 2)
    # Assert
    for name, value in original.trainable_state().items():
        assert torch.equal(restored.trainable_state()[name], value), name
    assert restored.sampler.state() == original.sampler.state()


def test_rolling_back_past_a_block_activation_returns_that_block_to_x0():
    config = tiny_config()
    client = tiny_client(config)
    x0 = client.trainable_state()
    tensors, meta = client.checkpoint_state()  # before training
    client.begin_block(1)
    _steps(client, 2)
    client.restore_state(tensors, meta)
    for name, value in client.trainable_state().items():
        assert torch.equal(value, x0[name]), name
    assert client.trained_blocks == []


def _commit(directory, step, keep_last=2, fingerprint="abc"):
    group = LocalClientGroup([tiny_client(tiny_config(), 0), tiny_client(tiny_config(), 1)])
    staging = checkpoint.stage(directory)
    metas = group.save_checkpoint(staging)
    return checkpoint.commit(directory, staging, global_step=step, fingerprint=fingerprint, client_meta=metas,
                             run_state={"dropped": []}, keep_last=keep_last)


def test_commit_is_atomic_and_keeps_the_last_k(tmp_path):
    for step in (-1, 4, 9):
        manifest = _commit(tmp_path, step)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["step-00000005", "step-00000010"]  # no staging left behind, oldest rotated away
    loaded = checkpoint.load_manifest(checkpoint.latest_checkpoint_dir(tmp_path), fingerprint="abc")
    assert loaded.global_step == 9 == manifest.global_step and sorted(loaded.client_meta) == [0, 1]


def test_checkpoint_from_another_config_is_refused(tmp_path):
    manifest = _commit(tmp_path, 3)
    with pytest.raises(CheckpointError, match="different configuration"):
        checkpoint.load_manifest(manifest.path, fingerprint="other")


def test_corrupted_manifest_and_client_file_are_refused(tmp_path):
    manifest = _commit(tmp_path, 3)
    (manifest.path / "client-0001.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="client-0001.safetensors is missing or corrupted"):
        checkpoint.read_client_file(manifest.path, 1)
    (manifest.path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json is missing or corrupted"):
        checkpoint.load_manifest(manifest.path, fingerprint="abc")


def test_missing_client_file_is_refused(tmp_path):
    manifest = _commit(tmp_path, 3)
    (manifest.path / "client-0000.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lacks client-0000.safetensors"):
        checkpoint.load_manifest(manifest.path, fingerprint="abc")
