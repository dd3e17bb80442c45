"""BENCHMARKS.md holds exactly what the renderers make of the newest committed result files."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from deca_ray.bench.gpu_report import render_gpu
from deca_ray.bench.quality import SUITE_FILE, load_suite, newest_suite
from deca_ray.bench.quality_report import render_quality
from deca_ray.bench.report import render_system
from deca_ray.bench.results import newest_result

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _section(name: str) -> str:
    text = (ROOT / "BENCHMARKS.md").read_text()
    return text.split(f"<!-- {name}:begin -->\n", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


def _render_result(kind: str, render: Callable[[dict[str, Any], Path], str]) -> str:
    path = newest_result(RESULTS, kind=kind)
    return render(json.loads(path.read_text()), path.relative_to(ROOT))


def _render_quality() -> str:
    suite_dir = newest_suite(RESULTS)
    return render_quality(*load_suite(suite_dir), suite_dir.relative_to(ROOT))


EXPECTED: dict[str, Callable[[], str]] = {"gpu": partial(_render_result, "gpu", render_gpu),
                                          "system": partial(_render_result, "system", render_system)}
if any(RESULTS.glob(f"quality-*/{SUITE_FILE}")):  # checked once a quality suite is committed
    EXPECTED["quality"] = _render_quality


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_benchmarks_md_section_is_the_rendered_newest_result(kind):
    assert _section(kind).rstrip() == EXPECTED[kind]().rstrip()
