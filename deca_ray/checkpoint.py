"""Checkpoints: safetensors for tensors, a JSON manifest for everything else, atomic and rotated.

Layout of one checkpoint (a directory, renamed into place only once complete)::

    checkpoints/step-00000012/   (12 inner steps done)
        manifest.json            position, fingerprint, run state, per-client metadata
        client-0003.safetensors  that client's trained parameters, moments and RNG state

Nothing is ever unpickled: tensors come from safetensors, the rest from JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deca_ray.errors import DecaError

FORMAT_VERSION = 1
_PREFIX = "step-"


class CheckpointError(DecaError):
    """A checkpoint is missing, corrupted, or belongs to a different configuration."""


@dataclass(frozen=True)
class Manifest:
    """A committed checkpoint: where it is and what the driver needs to continue from it."""

    path: Path
    global_step: int
    """The last completed inner step; training resumes at ``global_step + 1`` (-1: before training)."""
    fingerprint: str
    client_meta: dict[int, dict[str, Any]]
    run_state: dict[str, Any]
    """Driver and topology state (e.g. dropped clients, MLflow run id, metrics before training)."""


def stage(directory: Path) -> Path:
    """A fresh staging directory next to the checkpoints (same filesystem, so rename is atomic).

    Clients write their own files into it: on a multi-node cluster ``directory`` must be
    shared storage, and no tensor passes through the driver.
    """
    directory.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))


def write_client_file(staging: Path, client: int, tensors: dict[str, torch.Tensor]) -> None:
    save_file(_contiguous(tensors), str(staging / _client_file(client)))


def read_client_file(checkpoint: Path, client: int) -> dict[str, torch.Tensor]:
    file = checkpoint / _client_file(client)
    try:
        return load_file(str(file))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"checkpoint file {file} is missing or corrupted ({error}); "
                              "delete this checkpoint directory to resume from the previous one") from None


def commit(
    directory: Path,
    staging: Path,
    *,
    global_step: int,
    fingerprint: str,
    client_meta: dict[int, dict[str, Any]],
    run_state: dict[str, Any],
    keep_last: int,
) -> Manifest:
    """Write the manifest, rename the staging directory into place, drop old checkpoints."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "global_step": global_step,
        "fingerprint": fingerprint,
        "clients": {str(client): meta for client, meta in sorted(client_meta.items())},
        "run_state": run_state,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    final = directory / f"{_PREFIX}{global_step + 1:08d}"  # step -1 (before training) → step-00000000
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)  # readers see a complete checkpoint or none
    _rotate(directory, keep_last)
    return Manifest(final, global_step, fingerprint, dict(client_meta), run_state)


def abort(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def latest_checkpoint_dir(directory: Path) -> Path | None:
    candidates = sorted(path for path in directory.glob(f"{_PREFIX}*") if path.is_dir())
    return candidates[-1] if candidates else None


def load_manifest(path: Path, fingerprint: str) -> Manifest:
    """Read and validate one checkpoint's manifest; ``fingerprint`` must match the run's config."""
    manifest = _read_manifest(path)
    if manifest["fingerprint"] != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was written by a different configuration (fingerprint "
            f"{manifest['fingerprint']}, this config {fingerprint}); resume with the run's own config.yaml "
            "or start a new run"
        )
    client_meta = {int(client): meta for client, meta in manifest["clients"].items()}
    for client in client_meta:
        if not (path / _client_file(client)).is_file():
            raise CheckpointError(f"checkpoint {path} lacks {_client_file(client)}; it is incomplete or corrupted")
    return Manifest(path, manifest["global_step"], manifest["fingerprint"], client_meta, manifest["run_state"])


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / "manifest.json"
    try:
        manifest = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint manifest {file} is missing or corrupted ({error}); "
                              "delete this checkpoint directory to resume from the previous one") from None
    try:
        checked = _ManifestFile.model_validate(manifest)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, item['loc'])) or '(top level)'}: {item['msg']}"
                             for item in error.errors()[:5])
        raise CheckpointError(f"checkpoint manifest {file} is malformed ({problems}); delete this checkpoint "
                              "directory to resume from the previous one") from None
    if checked.format_version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {checked.format_version}, "
                              f"this deca_ray reads format {FORMAT_VERSION}")
    return checked.model_dump()


class _ClientMeta(BaseModel):
    """One client's entry in the manifest (``ClientState.to_checkpoint``'s metadata)."""

    model_config = ConfigDict(extra="allow", strict=True)

    active_block: int | None
    trained_blocks: list[int]
    moment_steps: dict[str, int]
    sampler: dict[str, int]


class _ManifestFile(BaseModel):
    """The manifest's JSON, type-checked before anything reads it (a hand-edited file fails here)."""

    model_config = ConfigDict(strict=True)

    format_version: int
    global_step: int = Field(ge=-1)
    fingerprint: str
    clients: dict[str, _ClientMeta]
    run_state: dict[str, Any]

    @field_validator("clients")
    @classmethod
    def _client_ids(cls, clients: dict[str, _ClientMeta]) -> dict[str, _ClientMeta]:
        bad = [key for key in clients if not key.isdigit()]
        if bad or not clients:
            raise ValueError(f"must map client ids (0, 1, ...) to their metadata, got keys {bad or 'none'}")
        return clients


def _rotate(directory: Path, keep_last: int) -> None:
    checkpoints = sorted(path for path in directory.glob(f"{_PREFIX}*") if path.is_dir())
    for old in checkpoints[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def _client_file(client: int) -> str:
    return f"client-{client:04d}.safetensors"


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses views that share storage (our parameters are views of one flat block).
    return {name: tensor.detach().contiguous().clone() for name, tensor in tensors.items()}
