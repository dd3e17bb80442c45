"""The layout limits the architecture asks for: small modules, a short ClientWorker, benchmarks outside the package."""

from __future__ import annotations

import ast
from pathlib import Path

import deca_ray
from deca_ray.client import worker

PACKAGE = Path(deca_ray.__file__).parent


def test_no_module_of_the_package_is_over_300_lines():
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 300}
    assert long == {}


def test_client_worker_is_a_short_class_of_verbs():
    tree = ast.parse(Path(worker.__file__).read_text())
    (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "ClientWorker"]
    assert cls.end_lineno is not None
    assert cls.end_lineno - cls.lineno + 1 <= 150


def test_the_installed_package_holds_no_benchmark_code():
    assert not (PACKAGE / "bench").exists()
    imports = {alias.name for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Import | ast.ImportFrom)
               for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not {name for name in imports if name.split(".")[0] == "benchmarks"}
