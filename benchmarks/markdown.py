"""BENCHMARKS.md: the header naming the commands, and the marked sections each report replaces."""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_MARKDOWN = Path("BENCHMARKS.md")

HEADER = """# Benchmarks

Numbers below are written by the project's own benchmark commands from the result files
under `benchmarks/results/` (one JSON per run, with commit, date and machine); do not edit
them by hand. Regenerate with `python -m benchmarks system` (section S), `python -m benchmarks
step` (the step profile), `python -m benchmarks system --cross-node` (exchange across nodes),
`python -m benchmarks lab` (the algorithm lab), `python -m benchmarks quality` (section Q),
`python -m benchmarks quality --confirm` (section Q-confirm) and `python -m benchmarks gpu-report`
(section G); see the design's BENCHMARK.md.
"""
"""Rendered on every update, so the commands it names are always the current ones."""

_FIRST_SECTION = re.compile(r"^<!-- [\w-]+:begin -->$", re.MULTILINE)


def update_markdown(markdown: Path, section: str, name: str) -> None:
    """Replace the text between ``<!-- name:begin/end -->`` (appending it if absent) and the header."""
    text = _with_header(markdown.read_text() if markdown.exists() else HEADER)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    markdown.write_text(text)


def _with_header(text: str) -> str:
    """``text`` with everything before its first marked section replaced by HEADER."""
    first = _FIRST_SECTION.search(text)
    return HEADER if first is None else HEADER + "\n" + text[first.start():]
