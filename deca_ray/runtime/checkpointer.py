"""When to checkpoint, and saving / restoring a whole client group through deca_ray.checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from deca_ray import checkpoint
from deca_ray.checkpoint import CheckpointError, Manifest
from deca_ray.config import CheckpointConfig
from deca_ray.runtime.group import ClientGroup
from deca_ray.schedule import Position

logger = logging.getLogger(__name__)


class Checkpointer:
    """Writes checkpoints on schedule and knows the latest one (what failures roll back to)."""

    def __init__(self, config: CheckpointConfig, directory: Path, fingerprint: str, inner_steps: int) -> None:
        self.config = config
        self.directory = directory
        self.fingerprint = fingerprint
        self.inner_steps = inner_steps
        self.latest: Manifest | None = None

    def due(self, position: Position) -> bool:
        every = self.config.every_steps
        if every is not None and (position.global_step + 1) % every == 0:
            return True
        return self.config.at_block_boundary and position.inner_step == self.inner_steps - 1

    def save(self, group: ClientGroup, global_step: int, run_state: dict[str, Any]) -> Manifest:
        """Every client writes its own file into a staging directory; the manifest commits it.

        A directory that cannot be written (permissions, a full disk) is a ``CheckpointError`` naming
        it and the last good checkpoint, which stays intact.
        """
        staging: Path | None = None
        try:
            staging = checkpoint.stage(self.directory)
            client_meta = group.save_checkpoint(staging)
            self.latest = checkpoint.commit(
                self.directory, staging, global_step=global_step, fingerprint=self.fingerprint,
                client_meta=client_meta, run_state=run_state, keep_last=self.config.keep_last,
            )
        except (OSError, SafetensorError) as error:
            last = f"the last good one is {self.latest.path}" if self.latest is not None else "none was written yet"
            raise CheckpointError(
                f"cannot write a checkpoint into {self.directory} ({getattr(error, 'strerror', None) or error}); "
                f"make it writable or free space, then resume (deca-ray run --resume RUN_DIR): {last}"
            ) from None
        finally:
            if staging is not None:
                checkpoint.abort(staging)  # no-op once committed (renamed away)
        logger.debug("checkpoint %s", self.latest.path)
        return self.latest

    def load_latest(self) -> Manifest | None:
        """The newest checkpoint on disk (validated against this config), e.g. to resume."""
        path = checkpoint.latest_checkpoint_dir(self.directory)
        self.latest = None if path is None else checkpoint.load_manifest(path, self.fingerprint)
        return self.latest

    def restore(self, group: ClientGroup, manifest: Manifest) -> None:
        group.restore_checkpoint(manifest.path, manifest.client_meta)
