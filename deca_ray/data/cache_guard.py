"""Undo what a failed step added to a cache directory (the lock files and folders ``datasets`` leaves).

``CacheSnapshot`` remembers what a directory holds; ``discard`` removes whatever was added since
(and the directory itself if it did not exist), leaving what was there before alone. A run that
fails to start discards its dataset cache additions this way; ``removed_on_error`` does the same
around one step.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class CacheSnapshot:
    """The entries under ``directory`` now, so that later additions can be taken back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.existed = directory.exists()
        self.before = set(directory.rglob("*")) if self.existed else set()

    def discard(self) -> None:
        """Remove every file and folder added under the directory since the snapshot."""
        if not self.existed:
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        if not self.directory.is_dir():
            return
        # deepest first, so a new folder holds no new entries when its turn comes
        for path in sorted(set(self.directory.rglob("*")) - self.before, key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@contextmanager
def removed_on_error(directory: Path | None) -> Iterator[None]:
    """If the block raises, remove what it added under ``directory``."""
    if directory is None:
        yield
        return
    snapshot = CacheSnapshot(directory)
    try:
        yield
    except BaseException:
        snapshot.discard()
        raise
