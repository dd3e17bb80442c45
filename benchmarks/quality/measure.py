"""One job of the suite: a normal tracked training run, then its final models scored by the suite; one result dict.

The run evaluates nothing itself (the suite scores x0 once per seed and every final model with
per-example predictions) and writes one checkpoint, at its last step, for the suite to rebuild its
models from; the checkpoint is deleted once they are scored.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.quality.final_models import score_run, scores_of
from benchmarks.quality.held_out import HeldOut, Parts
from benchmarks.quality.plan import Job
from benchmarks.quality.presets import GRID, QualityPreset
from benchmarks.quality.suite_dir import VERSION
from benchmarks.results import metadata
from deca_ray.config import ExperimentConfig, config_from_dict, merge_overrides

logger = logging.getLogger(__name__)


def job_config(preset: QualityPreset, job: Job, output_dir: Path) -> ExperimentConfig:
    raw = copy.deepcopy(preset.base)
    merge_overrides(raw, copy.deepcopy(job.run.overrides))
    merge_overrides(raw, {
        "name": f"{raw.get('name', 'quality')}-{job.run.name}-s{job.seed}-lr{job.lr:g}", "seed": job.seed,
        "algorithm": {"lr": job.lr},
        # A benchmark compares numbers: no ~540 MB model directory written and logged per run.
        "tracking": {"output_dir": str(output_dir), "save_model": False, "log_model": False},
    })
    raw["checkpoint"] = _last_step_checkpoint(config_from_dict(raw))
    return config_from_dict(raw)


def _last_step_checkpoint(config: ExperimentConfig) -> dict[str, Any]:
    """One checkpoint after the last step (a fixed region's step count is known); else every block's end."""
    algorithm = config.algorithm
    if algorithm.blocks.order != "fixed" or not algorithm.blocks.fixed_order:
        return {"enabled": True, "keep_last": 1}
    steps = algorithm.rounds * len(algorithm.blocks.fixed_order) * algorithm.inner_steps
    return {"enabled": True, "at_block_boundary": False, "every_steps": steps, "keep_last": 1}


def measure(preset: QualityPreset, job: Job, config: ExperimentConfig, held: HeldOut) -> dict[str, Any]:
    from deca_ray.runner import run_experiment

    parts = Parts.of(preset.validation_size, preset.client_examples, len(held.examples))
    started = time.perf_counter()
    result = run_experiment(config)
    trained = time.perf_counter()
    scores = score_run(result.run_dir, held, parts, validation=job.phase == GRID, clients=job.run.scores_clients)
    shutil.rmtree(config.checkpoint.directory or result.run_dir / "checkpoints", ignore_errors=True)
    summary = result.summary
    logger.info("%s seed %d lr %g: x̄ test accuracy %.3f; trained in %.0f s, scored in %.0f s", job.run.name,
                job.seed, job.lr, scores["average"]["test"]["accuracy"], trained - started,
                time.perf_counter() - trained)
    bytes_sent = summary["bytes_sent_per_client"]
    return {
        "version": VERSION, "kind": "run", "metadata": metadata(), "preset": preset.name,
        "run": job.run.name, "table": job.run.table, "label": job.run.label, "family": job.run.family,
        "phase": job.phase, "seed": job.seed, "lr": job.lr,
        "config": config.model_dump(mode="json"),
        "training": {
            "steps_per_client": summary["steps"],
            "bytes_sent_per_client": sum(bytes_sent.values()) / len(bytes_sent),
            "peak_tensor_bytes_per_client": summary["peak_tensor_bytes_per_client"],
            "median_step_time_s": summary["median_step_time_s"],
            "num_clients": summary["num_clients"],
            "run_wall_time_s": summary["wall_time_s"],
        },
        "topology": summary["topology"],
        "curves": {
            "step": [m.position.global_step for m in result.history],
            "mean_loss": [m.mean_loss for m in result.history],
            "consensus_distance": [m.consensus_distance for m in result.history],
        },
        "held_out": held_out_record(held, parts, validation=job.phase == GRID),
        "scores": scores,
        "timing": {"train_s": trained - started, "score_s": time.perf_counter() - trained,
                   "wall_time_s": time.perf_counter() - started},
        "mlflow": {"tracking_uri": result.tracking_uri, "run_id": result.run_id},
        "run_dir": str(result.run_dir),
    }


def held_out_record(held: HeldOut, parts: Parts, validation: bool) -> dict[str, Any]:
    """What the predictions are paired on: the held-out set's digest, sizes and true labels."""
    splits = {"validation": parts.validation} if validation else {}
    splits["test"] = parts.test
    return {"digest": held.digest, "label_words": held.label_words, "layer": held.states.layer,
            "sizes": {name: len(held.examples[part]) for name, part in (splits | {"clients": parts.clients}).items()},
            "labels": {name: held.labels(part) for name, part in splits.items()}}


def x0_record(preset: QualityPreset, seed: int, held: HeldOut, config: ExperimentConfig) -> dict[str, Any]:
    """The shared start x0 of ``seed`` (every run of the seed starts from it), scored on validation and test."""
    parts = Parts.of(preset.validation_size, preset.client_examples, len(held.examples))
    scoring = config.evaluation.scoring
    return {
        "version": VERSION, "kind": "x0", "metadata": metadata(), "preset": preset.name, "seed": seed,
        "held_out": held_out_record(held, parts, validation=True),
        "scores": {"average": {name: scores_of(held.x0_sums[part], held, part, scoring)
                               for name, part in (("validation", parts.validation), ("test", parts.test))}},
        "timing": {"score_s": held.score_s},
    }
