"""``metrics.jsonl``: the run's per-step history, one JSON line per inner step, written as the run goes.

Each step is appended and flushed when it completes, so a crash, a signal or a resume loses
none. A step that is run again (after a resume or a rollback to a checkpoint) first cuts the
file back to the steps before it: the file always holds every step of the run exactly once,
in order, and the summary and loss curves are drawn from the whole file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE_NAME = "metrics.jsonl"


class StepHistory:
    """Appends step records (``StepMetrics.as_dict()``) to ``path``, keyed by ``global_step``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last_step: int | None = None  # read from the file on the first append

    def append(self, record: dict[str, Any]) -> None:
        """Write one step's record; a step at or before the last one written rewinds the file first."""
        step = int(record["global_step"])
        if self._last_step is None:  # first append of this process: the file may hold an earlier attempt
            self._last_step = max((r["global_step"] for r in self.records()), default=-1)
            if not self._ends_cleanly():
                self.truncate(step)
        if step <= self._last_step:
            self.truncate(step)
        with self.path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
            stream.flush()
        self._last_step = step

    def truncate(self, before_step: int) -> None:
        """Keep only the records of steps before ``before_step`` (atomically: a crash leaves either file)."""
        kept = [r for r in self.records() if r["global_step"] < before_step]
        staging = self.path.with_name(f".{self.path.name}.tmp")
        staging.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(staging, self.path)
        self._last_step = kept[-1]["global_step"] if kept else -1

    def records(self) -> list[dict[str, Any]]:
        """Every complete record in the file (a line cut short by a crash is left out)."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("global_step"), int):
                records.append(record)
        return records

    def _ends_cleanly(self) -> bool:
        """False when the last line was cut short (a kill mid-write): it must not prefix the next record."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return True
        with self.path.open("rb") as stream:
            stream.seek(-1, os.SEEK_END)
            return stream.read(1) == b"\n"
