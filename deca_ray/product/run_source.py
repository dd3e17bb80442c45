"""A run directory as the source of a model: its config and its clients' trained tensors at the last checkpoint.

A run directory (``runs/<name>-<time>/``) holds ``config.yaml`` and ``checkpoints/step-N/``; a
checkpoint holds, per client, every parameter trained so far (what differs from x0). The rest
of the model is x0, which is rebuilt from the config, so a checkpoint plus its config is a model.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from deca_ray import checkpoint
from deca_ray.checkpoint import Manifest
from deca_ray.config import ExperimentConfig, load_config
from deca_ray.errors import ExportError
from deca_ray.methods import build_method

logger = logging.getLogger(__name__)

AVERAGE = "average"
_CLIENT = re.compile(r"client:(\d+)")
_PARAM_PREFIX = "param/"


@dataclass(frozen=True)
class ModelChoice:
    """Which model of a run: the network average x̄ (``client`` None) or client i's own x_i."""

    client: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelChoice:
        """``average`` or ``client:N``."""
        if text == AVERAGE:
            return cls()
        match = _CLIENT.fullmatch(text)
        if match is None:
            raise ExportError(f"--model {text!r}: use 'average' (the network-average model) or 'client:N' "
                              "(client N's own model, e.g. client:0)")
        return cls(int(match.group(1)))

    def __str__(self) -> str:
        return AVERAGE if self.client is None else f"client:{self.client}"


AVERAGE_MODEL = ModelChoice()


@dataclass(frozen=True)
class RunCheckpoint:
    """A run's resolved config and its newest committed checkpoint."""

    run_dir: Path
    config: ExperimentConfig
    manifest: Manifest

    @property
    def clients(self) -> list[int]:
        return sorted(self.manifest.client_meta)

    def client_state(self, client: int) -> dict[str, torch.Tensor]:
        """Client ``client``'s trained parameters, by parameter name (moments and RNG left out)."""
        tensors = checkpoint.read_client_file(self.manifest.path, client)
        return {name.removeprefix(_PARAM_PREFIX): value for name, value in tensors.items()
                if name.startswith(_PARAM_PREFIX)}

    def trained_state(self, choice: ModelChoice) -> dict[str, torch.Tensor]:
        """The chosen model's trained tensors: one client's, or the method's network average of all."""
        if choice.client is not None:
            if choice.client not in self.manifest.client_meta:
                raise ExportError(f"--model {choice}: {self.manifest.path} holds clients {self.clients}; "
                                  f"pick one of them")
            return self.client_state(choice.client)
        states = [self.client_state(client) for client in self.clients]
        # The method's own average: DeCAF averages the products B·A, not the factors.
        return build_method(self.config.algorithm).average(states)

    def describe(self) -> dict:
        """Where the tensors came from (written beside an exported model)."""
        return {"run_dir": str(self.run_dir.resolve()), "checkpoint": self.manifest.path.name,
                "completed_steps": self.manifest.global_step + 1, "fingerprint": self.manifest.fingerprint}


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def open_run(run_dir: Path) -> RunCheckpoint:
    """The run's config and newest checkpoint; an ExportError says what is missing."""
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} is not a directory; pass a run directory such as runs/<name>-<time>/")
    if not is_run_dir(run_dir):
        raise ExportError(f"{run_dir} holds no config.yaml, so it is not a deca-ray run directory "
                          "(runs/<name>-<time>/)")
    config = load_config(run_dir / "config.yaml")
    directory = config.checkpoint.directory or run_dir / "checkpoints"
    latest = checkpoint.latest_checkpoint_dir(directory) if directory.is_dir() else None
    if latest is None:
        raise ExportError(f"{run_dir} has no checkpoint in {directory} (was checkpoint.enabled false?); "
                          "a model is rebuilt from a checkpoint, so there is nothing to export")
    manifest = checkpoint.load_manifest(latest, config.fingerprint())
    logger.info("%s: checkpoint %s (%d inner steps done)", run_dir, latest.name, manifest.global_step + 1)
    return RunCheckpoint(run_dir, config, manifest)
