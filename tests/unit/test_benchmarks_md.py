"""BENCHMARKS.md holds exactly what the renderers make of the newest committed result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deca_ray.bench.gpu_report import render_gpu
from deca_ray.bench.report import render_system
from deca_ray.bench.results import newest_result

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _section(name: str) -> str:
    text = (ROOT / "BENCHMARKS.md").read_text()
    return text.split(f"<!-- {name}:begin -->\n", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


@pytest.mark.parametrize(("kind", "render"), [("gpu", render_gpu), ("system", render_system)])
def test_benchmarks_md_section_is_the_rendered_newest_result(kind, render):
    path = newest_result(RESULTS, kind=kind)
    expected = render(json.loads(path.read_text()), path.relative_to(ROOT))
    assert _section(kind).rstrip() == expected.rstrip()
