"""BENCHMARKS.md holds exactly what the renderers make of the newest committed result files, under their header."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import parser
from benchmarks.gpu.report import render_gpu
from benchmarks.lab.report import render_lab
from benchmarks.markdown import HEADER
from benchmarks.quality.report import render_quality
from benchmarks.quality.run import SUITE_FILE, load_suite, newest_suite
from benchmarks.quality.suite_dir import earlier_suites
from benchmarks.results import newest_result
from benchmarks.step.report import render_step
from benchmarks.system.crossnode_report import render_crossnode
from benchmarks.system.report import render_system

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _section(name: str) -> str:
    text = (ROOT / "BENCHMARKS.md").read_text()
    return text.split(f"<!-- {name}:begin -->\n", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


def _render_result(kind: str, render: Callable[[dict[str, Any], Path], str]) -> str:
    path = newest_result(RESULTS, kind=kind)
    return render(json.loads(path.read_text()), path.relative_to(ROOT))


def _render_quality(kind: str) -> str:
    suite_dir = newest_suite(RESULTS, kind)
    earlier = [(*load_suite(path), path.relative_to(ROOT)) for path in earlier_suites(suite_dir)]
    return render_quality(*load_suite(suite_dir), suite_dir.relative_to(ROOT), earlier)


EXPECTED: dict[str, Callable[[], str]] = {"gpu": partial(_render_result, "gpu", render_gpu),
                                          "system": partial(_render_result, "system", render_system)}
for suite_kind in ("quality", "confirm"):
    if any(RESULTS.glob(f"{suite_kind}-*/{SUITE_FILE}")):  # checked once such a suite is committed
        EXPECTED[suite_kind] = partial(_render_quality, suite_kind)
if any(RESULTS.glob("step-*.json")):  # checked once a step profile is committed
    EXPECTED["step"] = partial(_render_result, "step", render_step)
if any(RESULTS.glob("lab-*.json")):  # checked once a lab result is committed
    EXPECTED["lab"] = partial(_render_result, "lab", render_lab)
if any(RESULTS.glob("crossnode-*.json")):  # checked once a cross-node result is committed
    EXPECTED["crossnode"] = partial(_render_result, "crossnode", render_crossnode)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_benchmarks_md_section_is_the_rendered_newest_result(kind):
    assert _section(kind).rstrip() == EXPECTED[kind]().rstrip()


def test_benchmarks_md_header_is_the_renderers_and_names_commands_that_exist():
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert text.startswith(HEADER + "\n<!-- ")
    named = re.findall(r"`python -m benchmarks\s+([\w-]+)", HEADER)  # a command may wrap onto the next line
    assert sorted(set(named)) == ["gpu-report", "lab", "quality", "step", "system"]
    for command in named:  # an unknown sub-command would exit with a usage error
        assert callable(parser().parse_args([command]).handler)
    assert "`python -m benchmarks quality --confirm`" in HEADER and parser().parse_args(["quality", "--confirm"]).confirm
