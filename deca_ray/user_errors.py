"""Exceptions that are the user's to fix (a path, a file, a permission), told as what to change.

The CLI shows ``DecaError``s as they are; anything else reaching it is either such a mistake,
which ``describe_user_error`` turns into one line for exit status 2, or a bug (a traceback).
"""

from __future__ import annotations

import errno

_WHERE = ("tracking.output_dir, checkpoint.directory, data.source, model.name, or the cache (DECA_RAY_CACHE / "
          "model.cache_dir)")
_FIXES = {
    errno.EACCES: "make it accessible to this user or choose another path",
    errno.EPERM: "make it accessible to this user or choose another path",
    errno.EROFS: "it is on a read-only file system: choose a writable path",
    errno.ENOSPC: "the disk is full: free space or choose another path",
    errno.EDQUOT: "the disk quota is used up: free space or choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
    errno.EISDIR: "it is a directory where a file was expected: choose another path",
    errno.EEXIST: "it already exists: remove it or choose another path",
}


def describe_user_error(error: BaseException) -> str | None:
    """One line saying what to change, or None when ``error`` is not a user's mistake."""
    if isinstance(error, UnicodeDecodeError):
        return (f"a file is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8, or check that "
                "the path names the intended file")
    if isinstance(error, OSError) and error.errno in _FIXES:
        where = f" {error.filename}" if error.filename else ""
        return (f"cannot use{where}: {error.strerror or error}; {_FIXES[error.errno]} (the paths a run uses: "
                f"{_WHERE})")
    return None
