"""Every module imports on its own (no import cycles, no module that works only after another)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys


AREAS = ("atomvla", "atomvla.schemas", "atomvla.curate", "atomvla.annotate", "atomvla.ui", "atomvla.train")


def _all_modules() -> list[str]:
    found: set[str] = set()
    for area in AREAS:
        found.add(area)
        pkg = importlib.import_module(area)
        found.update(info.name for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{area}."))
    return sorted(m for m in found if not m.endswith("__main__"))


# The child forks per module from a parent that has imported the heavy third-party packages only,
# so each module is imported into an interpreter holding no atomvla module, cheaply.
CHILD = r"""
import importlib, os, sys
import numpy, pyarrow, pandas, pydantic, typer, rich, torch, transformers  # noqa: F401
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            sys.stderr.write(f"{name}: {type(exc).__name__}: {exc}\n")
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(name)
print("FAILED " + " ".join(failed) if failed else "OK")
"""


def test_every_module_imports_on_its_own():
    modules = _all_modules()
    assert "atomvla.annotate.backends.base" in modules and "atomvla.train.cli" in modules
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", CHILD, *modules], capture_output=True, text=True, env=env, timeout=600)
    assert result.stdout.strip() == "OK", result.stdout + result.stderr
