"""Result files: one JSON per benchmark run, with the commit, date and machine it was measured on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deca_ray.errors import DecaError

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS_DIR = Path("benchmarks/results")
"""Relative to the repository root, where ``python -m benchmarks`` runs (BENCHMARKS.md cites these paths)."""
_STAMP = "%Y%m%dT%H%M%SZ"


class NoResultError(DecaError):
    """Nothing to render: the results directory holds no result of that kind."""


def metadata(now: datetime | None = None) -> dict[str, Any]:
    """Commit, UTC date, machine and library versions: what makes a number reproducible."""
    now = now or datetime.now(timezone.utc)
    return {"git": git_info(), "date_utc": now.isoformat(timespec="seconds"), "machine": machine_info(),
            "versions": versions()}


def git_info(repo: Path | None = None) -> dict[str, Any]:
    """HEAD and whether tracked files differ from it (untracked files and result files do not count:
    a re-run writes results into a committed suite while it measures)."""
    if os.environ.get("DECA_RAY_COMMIT"):  # a copy of the tree without .git (e.g. a GPU machine)
        return {"commit": os.environ["DECA_RAY_COMMIT"], "dirty": None}
    repo = repo or REPOSITORY
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){DEFAULT_RESULTS_DIR}")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_bytes": _ram_bytes(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    import torch
    import transformers

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:  # the GPU check runs where Ray cannot be installed
        ray_version = "not installed"
    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray_version,
            "transformers": transformers.__version__, "deca_ray": _package_version()}


def write_result(payload: dict[str, Any], directory: Path, kind: str = "system", now: datetime | None = None) -> Path:
    """``<directory>/<kind>-<UTC timestamp>.json``; never overwrites an existing result."""
    now = now or datetime.now(timezone.utc)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kind}-{now.strftime(_STAMP)}.json"
    with path.open("x") as stream:
        json.dump(payload, stream, indent=2, default=_jsonable)
        stream.write("\n")
    return path


def newest_result(directory: Path, kind: str = "system") -> Path:
    """The latest ``<kind>-*.json`` (timestamps sort as text)."""
    candidates = sorted(directory.glob(f"{kind}-*.json"))
    if not candidates:
        raise NoResultError(f"no {kind}-*.json in {directory}; run `python -m benchmarks {kind}` first")
    return candidates[-1]


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None  # not a checkout (an installed wheel): recorded as null, not guessed
    return done.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return None


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deca-ray")
    except PackageNotFoundError:
        return "unknown"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "as_dict"):
        return value.as_dict()
    raise TypeError(f"cannot write {type(value).__name__} into a result file")
