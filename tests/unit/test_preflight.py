"""Start-up checks: places a run writes to, the tracking URI, the cache, and values only a later step could
reject; plus a checkpoint directory that stops being writable mid-run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deca_ray.config import ModelConfig, TrackingConfig, config_from_dict
from deca_ray.errors import ConfigError, DecaError
from deca_ray.experiment import check_method_fits_model
from deca_ray.methods import build_method
from deca_ray.models import cache_dir
from deca_ray.preflight import check_tracking_uri, check_writable_dir
from tests.helpers import TINY_VOCAB, tiny_config


def test_an_empty_deca_ray_cache_means_the_default_cache_not_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("DECA_RAY_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir(ModelConfig()) == tmp_path / ".cache" / "deca_ray"


def test_a_directory_that_can_be_created_passes_and_nothing_is_created(tmp_path):
    check_writable_dir(tmp_path / "new" / "runs", "tracking.output_dir")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("path", "message"), [
    ("{tmp}/a_file/runs", "is a file, not a directory"),
    ("/sys/deca-ray-runs", "cannot write in /sys"),
])
def test_an_unusable_directory_is_refused_naming_the_setting(path, message, tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ConfigError, match=message) as error:
        check_writable_dir(Path(path.format(tmp=tmp_path)), "tracking.output_dir")
    assert "tracking.output_dir" in str(error.value)


@pytest.mark.parametrize(("uri", "message"), [
    ("htp:/x", "unknown scheme 'htp'"),
    ("http:/x", "names no host"),
    ("http://127.0.0.1:1", "no MLflow server answers at 127.0.0.1:1"),
    ("sqlite:///{tmp}/a_file/mlflow.db", "is a file, not a directory"),
])
def test_a_tracking_uri_that_cannot_work_is_refused_before_anything_starts(uri, message, tmp_path, monkeypatch):
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ConfigError, match=message):
        check_tracking_uri(TrackingConfig(tracking_uri=uri.format(tmp=tmp_path)))


@pytest.mark.parametrize("uri", ["{tmp}/store", "file://{tmp}/store", "sqlite:///{tmp}/db/mlflow.db",
                                 "postgresql://user@db.example/mlflow", "databricks"])
def test_usable_tracking_uris_pass(uri, tmp_path):
    check_tracking_uri(TrackingConfig(tracking_uri=uri.format(tmp=tmp_path)))
    assert list(tmp_path.iterdir()) == []


def test_a_fixed_order_beyond_the_model_s_blocks_is_a_config_error():
    config = tiny_config(algorithm={"blocks": {"order": "fixed", "fixed_order": [99]}})
    with pytest.raises(ConfigError, match=r"fixed_order names block\(s\) \[99\], but the model has 2 blocks"):
        check_method_fits_model(config, build_method(config.algorithm), TINY_VOCAB)


def test_a_checkpoint_directory_unwritable_mid_run_stops_naming_it_and_the_last_good_checkpoint(tokenizer, tmp_path):
    from deca_ray.runner import run_experiment

    checkpoints = tmp_path / "ckpt"
    config = config_from_dict({
        "name": "ckpt", "num_clients": 2,
        "model": {"name": "tiny-llama", "tiny": {"num_layers": 2, "hidden_size": 32, "num_heads": 4,
                                                  "num_kv_heads": 2, "intermediate_size": 64}},
        "data": {"max_train_examples": 20, "test_size": 4, "max_tokens": 48, "body_words": 10, "batch_size": 2},
        "partition": {"type": "iid"}, "algorithm": {"inner_steps": 2, "blocks": {"layers_per_block": 1}},
        "runtime": {"backend": "local"}, "evaluation": {"before_training": False, "after_training": False},
        "tracking": {"enabled": False, "output_dir": str(tmp_path / "runs")},
        "checkpoint": {"directory": str(checkpoints)},
    })

    def break_the_directory(metrics):  # a full disk or lost permissions, as seen by mkdir: a file in the way
        if metrics.position.global_step == 1:
            shutil.rmtree(checkpoints)
            checkpoints.write_text("in the way")

    with pytest.raises(DecaError, match=f"cannot write a checkpoint into {checkpoints}.*make it writable"):
        run_experiment(config, on_step=break_the_directory)
