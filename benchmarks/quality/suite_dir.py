"""A quality suite's directory: ``suite.json``, one result file per (run, seed, lr), x0's per seed, all atomic.

    quality-<UTC time>/
        suite.json                       version, preset, metadata at creation, sessions (wall time), re-runs
        <run>-seed<seed>-lr<lr>.json     one training run scored by the suite (see measure.py)
        x0-seed<seed>.json               the shared start x0 of that seed, scored once
        superseded/                      results replaced by ``--rerun``, kept for the record
        *.png                            the report's plots

Suites written before v2 (``suite.json`` without ``version``: one file per run) stay readable.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.results import NoResultError, metadata
from deca_ray.errors import ConfigError

SUITE_FILE = "suite.json"
VERSION = 2
SUPERSEDED = "superseded"
_STAMP = "%Y%m%dT%H%M%SZ"


def result_name(run: str, seed: int, lr: float) -> str:
    return f"{run}-seed{seed}-lr{lr:g}.json"


def x0_name(seed: int) -> str:
    return f"x0-seed{seed}.json"


def new_suite(results_dir: Path, preset: str, design: dict[str, Any]) -> Path:
    """A fresh ``<kind>-<time>/`` (``quality`` or ``confirm``) holding only its ``suite.json``."""
    stamp, kind = datetime.now(timezone.utc).strftime(_STAMP), design["kind"]
    path = results_dir / f"{kind}-{stamp}"
    for again in range(1, 100):  # two suites started in one second: the later one sorts after
        try:
            path.mkdir(parents=True, exist_ok=False)
            break
        except FileExistsError:
            path = results_dir / f"{kind}-{stamp}-{again}"
    write_json(path / SUITE_FILE, {"version": VERSION, "preset": preset, "design": design, "metadata": metadata(),
                                   "sessions": [], "reruns": []})
    return path


def open_suite(suite_dir: Path, preset: str, design: dict[str, Any]) -> dict[str, Any]:
    """The suite record of a v2 suite of ``preset`` measured with ``design`` (runs may have been added since);
    ConfigError for anything else."""
    path = suite_dir / SUITE_FILE
    if not path.is_file():
        raise ConfigError(f"--into {suite_dir}: no {SUITE_FILE} there; pass a quality-* or confirm-* suite directory")
    suite = json.loads(path.read_text())
    suite.get("design", {}).setdefault("kind", "quality")  # suites begun before confirmations had kinds
    if suite.get("version") != VERSION:
        raise ConfigError(f"--into {suite_dir} is a suite of version {suite.get('version', 1)}, written before the "
                          f"v{VERSION} layout; start a new suite (leave out --into)")
    if suite["preset"] != preset:
        raise ConfigError(f"--into {suite_dir} holds preset {suite['preset']!r}, not {preset!r}")
    changed = sorted(key for key in design if key not in ("runs", "grids") and suite["design"].get(key) != design[key])
    if changed or not _grids_kept(suite["design"]["grids"], design["grids"]):
        raise ConfigError(f"--into {suite_dir}: the preset's {', '.join(changed or ['grids'])} changed since the suite "
                          "began, so its results would not compare; start a new suite (leave out --into)")
    if suite["design"]["grids"] != design["grids"]:  # rates added: the measured ones still compare
        suite.setdefault("grid_extensions", []).append({
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "from": suite["design"]["grids"],
            "to": design["grids"]})
    suite["design"] = design  # the current runs and rates: a run or a rate added to the preset joins the suite
    return suite


def _grids_kept(before: dict[str, list[float]], after: dict[str, list[float]]) -> bool:
    """Whether ``after`` has the same families as ``before``, each still holding every rate it had."""
    return before.keys() == after.keys() and all(set(before[family]) <= set(after[family]) for family in before)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``path`` atomically: a crash leaves the old file or none, never half of one."""
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(staged, path)


def read_results(suite_dir: Path) -> dict[str, dict[str, Any]]:
    """Every result file of a v2 suite (training runs and x0), by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(suite_dir.glob("*.json"))
            if path.name != SUITE_FILE}


def supersede(suite_dir: Path, name: str) -> Path | None:
    """Move result ``name`` into ``superseded/`` (time-stamped), for the record; None when it does not exist."""
    old = suite_dir / name
    if not old.exists():
        return None
    target = suite_dir / SUPERSEDED / f"{old.stem}-{datetime.now(timezone.utc).strftime(_STAMP)}.json"
    target.parent.mkdir(exist_ok=True)
    old.rename(target)
    return target


def load_suite(suite_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The suite record and its results: v2, every result file; v1, its runs' files in run order."""
    suite = json.loads((suite_dir / SUITE_FILE).read_text())
    if suite.get("version") == VERSION:
        return suite, list(read_results(suite_dir).values())
    return suite, [json.loads((suite_dir / f"{name}.json").read_text()) for name in suite["runs"]]


def newest_suite(results_dir: Path, kind: str = "quality") -> Path:
    """The newest ``<kind>-*/`` suite of ``results_dir``."""
    suites = sorted(path.parent for path in results_dir.glob(f"{kind}-*/{SUITE_FILE}"))
    if not suites:
        flag = "" if kind == "quality" else f" --{kind}"
        raise NoResultError(f"no {kind}-*/{SUITE_FILE} in {results_dir}; run `python -m benchmarks quality{flag}` first")
    return suites[-1]


def earlier_suites(suite_dir: Path) -> list[Path]:
    """The v2 suites of its kind beside ``suite_dir`` begun before it, oldest first (a newer design replaced them)."""
    kind = suite_dir.name.split("-", 1)[0]
    siblings = sorted(path.parent for path in suite_dir.parent.glob(f"{kind}-*/{SUITE_FILE}"))
    return [path for path in siblings
            if path.name < suite_dir.name and json.loads((path / SUITE_FILE).read_text()).get("version") == VERSION]


def suite_wall_time_s(suite: dict[str, Any]) -> float:
    """Wall time of every session that measured into the suite (a v1 suite records one number)."""
    if "wall_time_s" in suite:
        return float(suite["wall_time_s"])
    return sum(session["wall_time_s"] for session in suite.get("sessions", []))
