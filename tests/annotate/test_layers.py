"""annotate's layers point one way: client (cache, limiter, retry, pricing) <- vlm <- backends <-
jobs (orchestration) <- cli. Checked on the source's import statements, lazy ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "annotate"
# Layer -> the annotate modules it must not import.
FORBIDDEN = {
    "client": ("atomvla.annotate.vlm", "atomvla.annotate.backends", "atomvla.annotate.jobs", "atomvla.annotate.cli"),
    "vlm.py": ("atomvla.annotate.backends", "atomvla.annotate.jobs", "atomvla.annotate.cli"),
    "backends": ("atomvla.annotate.jobs", "atomvla.annotate.cli"),
    "jobs": ("atomvla.annotate.cli",),
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    files = [ROOT / layer] if layer.endswith(".py") else sorted((ROOT / layer).glob("*.py"))
    assert files
    wrong = {
        f"{f.name}: {name}"
        for f in files
        for name in _imports(f)
        if any(name == up or name.startswith(up + ".") for up in FORBIDDEN[layer])
    }
    assert not wrong, sorted(wrong)
