"""The CLI's one place for user mistakes: domain errors and OSErrors on the user's paths exit 2; bugs raise."""

from __future__ import annotations

import errno

import pytest

from deca_ray import cli
from deca_ray.user_errors import describe_user_error


@pytest.mark.parametrize(("error", "fragment"), [
    (PermissionError(errno.EACCES, "Permission denied", "/data/runs"), "cannot use /data/runs: Permission denied"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/ckpt"), "the disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro"), "read-only file system"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/file/x"), "a part of the path is a file"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "not UTF-8 text"),
])
def test_a_mistake_on_a_path_exits_2_saying_what_to_change(error, fragment, monkeypatch, capsys):
    def handler(args):
        raise error

    monkeypatch.setattr(cli, "_list_methods", handler)
    assert cli.main(["methods"]) == 2
    assert fragment in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch):
    def handler(args):
        raise IndexError("tuple index out of range")

    monkeypatch.setattr(cli, "_list_methods", handler)
    with pytest.raises(IndexError):
        cli.main(["methods"])
    assert describe_user_error(ValueError("x")) is None
