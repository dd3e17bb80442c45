"""Write a directory atomically: build it in a staging directory beside it, then rename it into place.

Readers (``from_pretrained``, an MLflow upload, a user) see the complete directory or none: a
failure or a kill mid-write leaves at most a hidden ``.<name>.partial-*`` staging directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deca_ray.errors import ExportError


def check_target(target: Path) -> None:
    """``target`` must not exist, or be an empty directory (nothing in it would be lost)."""
    if target.is_dir() and any(target.iterdir()):
        raise ExportError(f"--out {target} exists and is not empty; pass a new directory or remove it first")
    if target.exists() and not target.is_dir():
        raise ExportError(f"--out {target} exists and is a file; pass a directory path")


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a staging directory on ``target``'s filesystem; on success it becomes ``target``."""
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        _chmod_like_mkdir(staging)
        yield staging
        check_target(target)  # another writer may have taken the name meanwhile
        if target.is_dir():
            target.rmdir()
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # no-op once renamed


def _chmod_like_mkdir(path: Path) -> None:
    """mkdtemp creates 0700; a model directory should get the permissions mkdir would give it."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o777 & ~umask)
